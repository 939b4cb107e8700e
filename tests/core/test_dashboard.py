"""The dashboard page and its endpoints: the first screen arrives embedded, panels degrade alone."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.core.redis import redis_client
from apps.market.models import Sector, Symbol
from apps.market.quotes import stage_quotes
from apps.market.ring import stage_ring
from apps.market.ticks import Tick
from apps.portfolio.services import OrderTerms, place_order

SCRIPT_TAG = re.compile(r"<script[^>]*\bsrc=\"([^\"]+)\"")


def embedded_bootstrap(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="bootstrap" type="application/json">(.*?)</script>', html, re.S)
    assert found, "the page embeds its first-screen data"
    return json.loads(found.group(1))


def logged_in(trader: tuple[Any, str]) -> Client:
    client = Client()
    client.force_login(trader[0].user)
    return client


def publish_quotes(ticks: list[Tick]) -> None:
    pipe = redis_client().pipeline(transaction=False)
    stage_quotes(pipe, ticks)
    pipe.execute()


@pytest.mark.django_db
def test_the_dashboard_asks_for_a_login(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


listings = st.dictionaries(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=5),
    st.tuples(
        st.integers(min_value=100, max_value=100_000),  # initial price in cents
        st.one_of(st.none(), st.integers(min_value=1, max_value=100_000)),  # latest price in cents, if it ticked
        st.booleans(),  # active
    ),
    max_size=25,
)


@pytest.mark.django_db
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(market=listings)
def test_every_first_screen_part_is_embedded_in_the_page(trader: tuple[Any, str], market: dict[str, Any]) -> None:
    """Feature: trading-performance-optimization, Property 19: For any dashboard load, the frontend should make at most 3 initial API calls"""  # noqa: E501
    Symbol.objects.all().delete()
    redis_client().flushdb()
    Symbol.objects.bulk_create(
        Symbol(ticker=t, name=f"{t} Corp", sector=Sector.ENERGY, initial_price=Decimal(i) / 100, active=a)
        for t, (i, _, a) in market.items()
    )
    publish_quotes([Tick(t, last / 100, i / 100, 7, 1_000) for t, (i, last, _) in market.items() if last is not None])
    response = logged_in(trader).get("/")
    assert response.status_code == 200
    html = response.content.decode()
    boot = embedded_bootstrap(html)
    # the market, portfolio, trades, leaderboard and analytics need no request of their own ...
    assert {"symbols", "portfolio", "orders", "leaderboard", "analytics", "websocket_path"} <= boot.keys()
    assert [row["symbol"] for row in boot["symbols"]] == sorted(market)
    for row in boot["symbols"]:
        initial, last, active = market[row["symbol"]]
        assert row["price"] == (last if last is not None else initial) / 100
        assert row["active"] is active
    assert boot["portfolio"]["cash"] == "100000.00"
    # ... and the page loads one script (the bundle), which opens the WebSocket; the chart of the
    # first open symbol adds at most two calls (ring points, one page of stored history): <= 3.
    assert [src for src in SCRIPT_TAG.findall(html)] == ["/static/dist/app.js"]


@pytest.mark.django_db
def test_the_bootstrap_endpoint_returns_the_first_screen(trader: tuple[Any, str], auth_header: dict[str, str]) -> None:
    Symbol.objects.create(ticker="ACME", name="Acme", sector=Sector.ENERGY, initial_price=Decimal("10.00"))
    publish_quotes([Tick("ACME", 12.5, 10.0, 100, 5_000)])
    body = Client().get("/api/v1/dashboard/bootstrap", **auth_header).json()
    acme = body["symbols"][0]
    assert (acme["symbol"], acme["price"], acme["change"], acme["timestamp"]) == ("ACME", 12.5, 2.5, 5_000)
    assert body["user"] == {"username": "alice", "is_staff": False}
    assert body["max_subscriptions"] == 200


@pytest.mark.django_db
def test_the_bootstrap_endpoint_needs_authentication() -> None:
    response = Client().get("/api/v1/dashboard/bootstrap")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


@pytest.mark.django_db
def test_a_failing_side_panel_leaves_the_page_up(trader: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("leaderboard store down")

    monkeypatch.setattr("apps.dashboard.selectors.leaderboard_top", broken)
    response = logged_in(trader).get("/")
    assert response.status_code == 200
    assert embedded_bootstrap(response.content.decode())["leaderboard"] is None


@pytest.mark.django_db
def test_the_chart_starts_from_the_ring_oldest_first_with_a_cursor_to_older_history(
    auth_header: dict[str, str],
) -> None:
    Symbol.objects.create(ticker="ACME", name="Acme", sector=Sector.ENERGY, initial_price=Decimal("10.00"))
    pipe = redis_client().pipeline(transaction=False)
    stage_ring(pipe, [(f"t{n}", Tick("ACME", 10 + n / 100, 10.0, n, 1_000 + n)) for n in range(5)])
    pipe.execute()
    body = Client().get("/api/v1/dashboard/chart/acme", **auth_header).json()
    assert [p["timestamp"] for p in body["points"]] == [1_000, 1_001, 1_002, 1_003, 1_004]
    assert body["before"]


@pytest.mark.django_db
@pytest.mark.parametrize(("ticker", "status"), [("NOPE", 404), ("bad ticker!", 422), ("X" * 11, 422)])
def test_the_chart_names_a_bad_or_unknown_ticker(auth_header: dict[str, str], ticker: str, status: int) -> None:
    response = Client().get(f"/api/v1/dashboard/chart/{ticker}", **auth_header)
    assert response.status_code == status
    assert "ticker" in json.dumps(response.json())


@pytest.mark.django_db
def test_the_trades_panel_shows_each_trade_s_invoice_status(
    trader: tuple[Any, str], auth_header: dict[str, str]
) -> None:
    Symbol.objects.create(ticker="ACME", name="Acme", sector=Sector.ENERGY, initial_price=Decimal("10.00"))
    publish_quotes([Tick("ACME", 10.0, 10.0, 1, 1_000)])
    place_order(trader=trader[0], symbol="ACME", side="buy", quantity=3)
    resting = OrderTerms(type="limit", limit_price=Decimal("5.00"), time_in_force="gtc")  # below the price: rests
    place_order(trader=trader[0], symbol="ACME", side="buy", quantity=2, terms=resting)
    orders = Client().get("/api/v1/dashboard/orders", **auth_header).json()
    # The resting order is in the open-orders panel, not among the trades; a filled trade's confirmation can be
    # downloaded at once (its PDF is made on first download).
    assert [(o["symbol"], o["quantity"], o["invoice_status"]) for o in orders] == [("ACME", 3, "ready")]
    assert orders[0]["invoice_url"] == f"/api/v1/trades/{orders[0]['id']}/invoice"


@pytest.mark.django_db
def test_the_page_still_loads_with_opening_prices_while_redis_is_down(
    trader: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def redis_down(*_: Any, **__: Any) -> None:
        raise redis.ConnectionError("Redis is down")

    Symbol.objects.create(ticker="ACME", name="Acme", sector=Sector.ENERGY, initial_price=Decimal("10.00"))
    monkeypatch.setattr("apps.market.selectors.latest_quotes", redis_down)
    monkeypatch.setattr("apps.portfolio.selectors.latest_prices", redis_down)
    response = logged_in(trader).get("/")
    assert response.status_code == 200
    assert embedded_bootstrap(response.content.decode())["symbols"][0]["price"] == 10.0
