import json
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core.redis import redis_client
from apps.market import selectors
from apps.market.buckets import store_ticks
from apps.market.models import Symbol
from apps.market.quotes import quote_key
from apps.market.services import symbols_seed
from apps.market.simulator import RedisTickSink
from apps.market.ticks import Tick

CURSOR_LATEST_MS = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp() * 1000)  # the last moment a cursor may name

SYMBOL_COUNT = 130


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


@pytest.fixture
def market(db: None) -> list[str]:
    for _ in symbols_seed(count=SYMBOL_COUNT, seed=11):
        pass
    return sorted(Symbol.objects.values_list("ticker", flat=True))


@pytest.fixture
def api(auth_header: dict[str, str]) -> Any:
    client = Client()

    def get(path: str, **params: Any) -> tuple[int, Any]:
        response = client.get(f"/api/v1/symbols{path}", params, **auth_header)
        return response.status_code, json.loads(response.content)

    return get


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.integers(1, 12), limit=st.integers(1, 100))
def test_a_symbol_page_never_holds_more_than_100_records(market: list[str], api: Any, page: int, limit: int) -> None:
    """Feature: trading-performance-optimization, Property 3: For any pagination request, the database layer should return at most 100 records per page"""  # noqa: E501
    status, body = api("", page=page, limit=limit)
    assert status == 200
    tickers = [s["ticker"] for s in body["data"]]
    assert len(tickers) <= min(limit, 100)
    assert tickers == market[(page - 1) * limit : page * limit]
    assert body["pagination"] == {
        "page": page,
        "limit": limit,
        "total": SYMBOL_COUNT,
        "hasNext": page * limit < SYMBOL_COUNT,
        "hasPrev": page > 1,
    }


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(10, 100))  # pages of 1-9 are covered by the Property 3 test above
def test_symbol_pages_cover_every_symbol_once_in_ticker_order(market: list[str], limit: int) -> None:
    """Feature: trading-performance-optimization, Property 37: For any paginated query, the ordering should remain consistent across all page requests"""  # noqa: E501
    seen: list[str] = []
    for page in range(1, SYMBOL_COUNT // limit + 2):
        seen += [s.ticker for s in selectors.symbol_page(page=page, limit=limit).symbols]
    assert seen == market


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"limit": 101}, "limit", "less than or equal to 100"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"page": 0}, "page", "greater than or equal to 1"),
        ({"page": "two"}, "page", "valid integer"),
        ({"sector": "casinos"}, "sector", "technology"),
        ({"search": "x" * 51}, "search", "at most 50"),
    ],
)
def test_bad_list_parameters_are_a_422_naming_the_field(
    market: list[str], api: Any, params: dict[str, Any], field: str, message: str
) -> None:
    status, body = api("", **params)
    assert status == 422
    assert body["detail"][0]["loc"][-1] == field and message in body["detail"][0]["msg"]


def test_symbols_filter_by_sector_and_search_and_carry_latest_quotes(market: list[str], api: Any) -> None:
    first = Symbol.objects.order_by("ticker").first()
    assert first is not None
    RedisTickSink().write([("q-1", Tick(first.ticker, 12.34, 12.0, 500, 1_700_000_000_000))])
    _, body = api("", sector=first.sector, limit=100)
    assert body["data"] and {s["sector"] for s in body["data"]} == {first.sector}
    assert body["data"][0]["quote"] == {
        "price": 12.34,
        "previous_close": 12.0,
        "change": 0.34,
        "change_percent": 2.83,
        "volume": 500,
        "timestamp": 1_700_000_000_000,
    }
    _, body = api("", search=first.name.split()[0].lower()[:4], limit=100)
    assert first.ticker in [s["ticker"] for s in body["data"]]
    _, body = api("", search=first.ticker.lower())
    assert body["data"][0]["ticker"] == first.ticker


def test_a_symbol_list_still_renders_without_redis(
    market: list[str], api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(symbols: object) -> None:
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(selectors, "latest_quotes", broken)
    status, body = api("", limit=3)
    assert status == 200 and [s["quote"] for s in body["data"]] == [None, None, None]


def test_one_symbol_has_its_latest_quote(market: list[str], api: Any) -> None:
    ticker = market[5]
    RedisTickSink().write([("q-1", Tick(ticker, 20.0, 19.0, 100, 1)), ("q-2", Tick(ticker, 21.5, 19.0, 300, 2))])
    status, body = api(f"/{ticker.lower()}")
    assert status == 200 and body["ticker"] == ticker and body["quote"]["price"] == 21.5


def test_one_symbol_falls_back_to_the_latest_stored_tick_when_redis_is_down(
    market: list[str], api: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ticker = market[7]
    store_ticks([("s-1", Tick(ticker, 33.3, 30.0, 700, now_ms()))])
    real_mget = redis_client().mget

    def broken(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(redis_client(), "mget", broken)
    with caplog.at_level("WARNING", logger="apps.market.selectors"):
        status, body = api(f"/{ticker}")
    monkeypatch.setattr(redis_client(), "mget", real_mget)
    assert status == 200 and body["quote"]["price"] == 33.3 and body["quote"]["change"] == 3.3
    assert any("latest stored tick" in record.message for record in caplog.records)
    assert redis_client().get(quote_key(ticker)) is None


@pytest.mark.parametrize(("path", "status"), [("/NOPE", 404), ("/NOPE/history", 404), ("/bad$ticker", 422)])
def test_unknown_or_malformed_tickers_are_refused(market: list[str], api: Any, path: str, status: int) -> None:
    code, body = api(path)
    assert code == status
    if status == 404:
        assert body["detail"] == "Unknown symbol 'NOPE'"
    else:
        assert body["detail"][0]["loc"][-1] == "ticker"


def test_history_pages_by_cursor(market: list[str], api: Any) -> None:
    ticker = market[0]
    now = now_ms()
    ticks = [(f"h-{n:03d}", Tick(ticker, 10 + n, 10.0, n, now - 1000 * (30 - n))) for n in range(30)]
    store_ticks(ticks[:20])
    RedisTickSink().write(ticks[10:])
    seen: list[str] = []
    before = None
    while True:
        params = {"limit": 7} | ({"before": before} if before else {})
        status, body = api(f"/{ticker}/history", **params)
        assert status == 200 and len(body["data"]) <= 7
        seen += [point["tick_id"] for point in body["data"]]
        before = body["nextCursor"]
        if before is None:
            break
    assert seen == [tick_id for tick_id, _ in reversed(ticks)]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"limit": 101}, "limit", "less than or equal to 100"),
        ({"limit": -1}, "limit", "greater than or equal to 1"),
        ({"before": "not-a-cursor"}, "before", "not a history cursor"),
        ({"before": "x" * 201}, "before", "at most 200"),
        ({"before": selectors.HistoryCursor(10**20, "t").encode()}, "before", "not a history cursor"),
        (
            {"before": selectors.HistoryCursor(CURSOR_LATEST_MS + 1, "t").encode()},
            "before",
            "out of range",
        ),
        ({"before": selectors.HistoryCursor(-5, "t").encode()}, "before", "not a history cursor"),
    ],
)
def test_bad_history_parameters_are_a_422_naming_the_field(
    market: list[str], api: Any, params: dict[str, Any], field: str, message: str
) -> None:
    status, body = api(f"/{market[0]}/history", **params)
    assert status == 422
    assert body["detail"][0]["loc"][-1] == field and message in body["detail"][0]["msg"]


def test_the_latest_cursor_the_api_accepts_is_a_page_not_a_500(market: list[str], api: Any) -> None:
    status, body = api(f"/{market[0]}/history", before=selectors.HistoryCursor(CURSOR_LATEST_MS, "t").encode())
    assert status == 200 and isinstance(body["data"], list)


def test_market_endpoints_need_authentication(market: list[str]) -> None:
    for path in ["", f"/{market[0]}", f"/{market[0]}/history"]:
        assert Client().get(f"/api/v1/symbols{path}").status_code == 401


def test_the_market_endpoints_are_in_the_openapi_schema(db: None) -> None:
    paths = json.loads(Client().get("/api/v1/openapi.json").content)["paths"]
    assert {"/api/v1/symbols", "/api/v1/symbols/{ticker}", "/api/v1/symbols/{ticker}/history"} <= set(paths)
    parameters = {p["name"]: p for p in paths["/api/v1/symbols/{ticker}/history"]["get"]["parameters"]}
    assert parameters["limit"]["schema"]["maximum"] == 100


def test_the_symbol_list_is_served_from_the_cache_and_a_symbol_change_refreshes_it(market: list[str], api: Any) -> None:
    """Property 34 for symbols: the listing is cached; saving a symbol invalidates every cached page."""
    from tests.mongo_commands import MONGO_COMMANDS

    _, first = api("", limit=5)
    with MONGO_COMMANDS.recording() as commands:
        _, again = api("", limit=5)
    assert again["data"] == first["data"]
    assert not [c for c in commands if c.collection == Symbol._meta.db_table]

    Symbol.objects.create(ticker="AAAA", name="Aardvark Holdings", sector="technology", initial_price="1.00")
    _, refreshed = api("", limit=5)
    assert refreshed["data"][0]["ticker"] == "AAAA"
    assert refreshed["pagination"]["total"] == SYMBOL_COUNT + 1
