"""The hot reads on the event loop (issue 11): a cached read costs no MongoDB call and a bounded number of
Redis round trips, through the project's real ASGI application; a miss is served too, from a thread."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from apps.core.cache import default_cache
from apps.leaderboard.services import leaderboard_rebuild
from apps.market.api import SymbolListOut
from apps.portfolio.selectors import account_key
from apps.portfolio.services import place_order
from tests.asgi_client import asgi_get, asgi_post, asgi_request
from tests.conftest import EngineThread
from tests.portfolio.conftest import MONGO_COMMANDS, RoundTrips

pytestmark = pytest.mark.django_db(transaction=True)


def get(path: str, token: str) -> tuple[int, bytes]:
    status, _headers, body = asgi_get(path, token)
    return status, body


# Redis round trips of a cached read: the rate limit's one pipeline, then what the read needs.
# The token's context and shared pages (symbol listings, leaderboards) are in the process' L1.
HOT_READS = {
    "/api/v1/me": 2,  # + the account
    "/api/v1/orders?limit=20": 2,  # + the newest orders
    "/api/v1/symbols?limit=50": 2,  # + one MGET of the page's quotes
    "/api/v1/leaderboard?page_size=20": 1,
    "/api/v1/portfolio": 3,  # + the account, + one MGET of the holdings' prices
}


@pytest.fixture
def active_trader(market: dict[str, Any], make_trader: Any) -> str:
    trader, token = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    leaderboard_rebuild()
    return str(token)


def engines_stopped(engines: list[EngineThread]) -> None:
    """The order engines read their streams all the time: stopped, so Redis round trips counted from every
    thread are the read's own."""
    for running in engines:
        running.stop()


@pytest.mark.parametrize("path", list(HOT_READS))
def test_a_cached_hot_read_makes_no_mongodb_call(
    active_trader: str, order_engine: list[EngineThread], round_trips: Callable[..., RoundTrips], path: str
) -> None:
    engines_stopped(order_engine)
    listener = default_cache().listener
    listener.ensure_started()
    assert listener.wait_subscribed(5)  # L1 serves only while invalidations can reach it
    assert get(path, active_trader)[0] == 200  # fills what the read caches
    counted = round_trips(all_threads=True)
    status, _ = get(path, active_trader)
    MONGO_COMMANDS.enabled_for = None
    assert status == 200
    assert counted.mongo == []
    assert counted.redis_calls == HOT_READS[path]


def test_a_read_whose_value_is_not_cached_is_served_from_mongodb_in_a_thread(active_trader: str, make_trader: Any):
    trader, token = make_trader("250.00")
    default_cache().invalidate("profiles", account_key(trader.user_id))
    status, body = get("/api/v1/me", token)
    assert status == 200 and json.loads(body)["cash"] == "250.00"


def test_the_symbol_list_fast_answer_is_the_documented_shape(active_trader: str) -> None:
    status, body = get("/api/v1/symbols?limit=3", active_trader)
    page = SymbolListOut.model_validate_json(body)  # the route's response schema
    assert status == 200 and [s.ticker for s in page.data] == ["ACME", "BOLT", "HALT"]
    assert page.data[0].quote is not None and page.data[0].quote.price == 10.0
    assert page.pagination.total == 4 and page.pagination.hasNext


def test_a_new_order_shows_in_the_cached_order_list_at_once(active_trader: str, market: Any, make_trader: Any):
    trader, token = make_trader("1000.00")
    assert json.loads(get("/api/v1/orders", token)[1])["data"] == []  # now cached: an empty list
    order = place_order(trader=trader, symbol="BOLT", side="buy", quantity=1).order
    status, body = get("/api/v1/orders", token)
    assert status == 200 and [o["id"] for o in json.loads(body)["data"]] == [str(order.pk)]


def test_a_full_page_of_orders_says_whether_more_follow(market: Any, make_trader: Any) -> None:
    from apps.portfolio.selectors import ORDER_PAGE_MAX

    trader, token = make_trader("100000.00")
    for _ in range(ORDER_PAGE_MAX + 1):
        place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    status, body = get(f"/api/v1/orders?limit={ORDER_PAGE_MAX}", token)
    page = json.loads(body)
    assert status == 200 and len(page["data"]) == ORDER_PAGE_MAX and page["nextCursor"] is not None


def buy(symbol: str, quantity: int = 1) -> dict[str, Any]:
    return {"symbol": symbol, "side": "buy", "quantity": quantity}


def test_an_order_over_the_api_sends_mongodb_the_engines_transaction_alone(
    active_trader: str, round_trips: Callable[..., RoundTrips]
) -> None:
    """The web reads nothing for an order (the trader's id is cached apart) and the engine has the account in
    memory, so MongoDB sees one transaction: the checkpoint, the order, its invoice, the account and the holding
    in one bulkWrite, then the commit."""
    assert asgi_post("/api/v1/orders", active_trader, buy("ACME"))[0] == 201
    counted = round_trips(all_threads=True)
    status, _headers, _body = asgi_post("/api/v1/orders", active_trader, buy("ACME"))
    MONGO_COMMANDS.enabled_for = None
    assert status == 201
    assert counted.mongo == ["bulkWrite", "commitTransaction"]


def test_orders_in_one_process_wait_for_the_engine_side_by_side(
    active_trader: str, make_trader: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two orders of one server process wait for the engine at the same time (awaited on the event loop),
    not one after the other: each waits at a barrier for the other, which a serial execution could never pass."""
    from apps.portfolio import api

    both_inside = asyncio.Barrier(2)
    real = api.place_order_async

    async def meet_then_place(**order: Any) -> Any:
        await asyncio.wait_for(both_inside.wait(), timeout=10)
        return await real(**order)

    monkeypatch.setattr(api, "place_order_async", meet_then_place)
    _trader, other = make_trader("1000.00")

    async def together() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        return list(
            await asyncio.gather(
                asgi_request("POST", "/api/v1/orders", active_trader, buy("ACME")),
                asgi_request("POST", "/api/v1/orders", other, buy("ACME")),
            )
        )

    answers = async_to_sync(together)()
    assert [status for status, _, _ in answers] == [201, 201], answers


def test_a_hot_read_and_an_order_on_the_lean_api_stack_make_no_thread_hop(
    active_trader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No middleware hops to a thread: a sync-only one (Django's SecurityMiddleware was one) runs its
    process_request and process_response each through sync_to_async, and the first makes the request a
    thread of its own. (Django's handler still sends its request signals through one.)"""
    from asgiref import sync

    assert asgi_post("/api/v1/orders", active_trader, {"symbol": "ACME", "side": "buy", "quantity": 1})[0] == 201
    assert get("/api/v1/me", active_trader)[0] == 200  # both paths' caches are warm
    hops: list[object] = []
    real = sync.SyncToAsync.__call__

    async def counted(self: sync.SyncToAsync, *args: Any, **kwargs: Any) -> Any:
        hops.append(self.func)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counted)
    assert asgi_post("/api/v1/orders", active_trader, {"symbol": "ACME", "side": "buy", "quantity": 1})[0] == 201
    status, headers, _ = asgi_get("/api/v1/me", active_trader)
    assert status == 200 and headers[b"x-content-type-options"] == b"nosniff"  # the security headers stay
    assert [f for f in hops if getattr(f, "__name__", "").startswith("process_")] == []
