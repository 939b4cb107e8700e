"""Orders under contention, against the real engine and embedded MongoDB: threads with their own connections.

The engine decides one shard's commands one at a time, so contention never ends in a 503: every order is
either filled or refused with its own code.
"""

import asyncio
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection

from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.services import OrderRejected, OrderResult, place_order
from tests.asgi_client import asgi_request

CONCURRENCY = 50


def all_at_once(call: Callable[[int], object], count: int = CONCURRENCY) -> list[object]:
    """Run `call(i)` in `count` threads released together; each thread has its own DB connection."""
    start = threading.Barrier(count)

    def run(i: int) -> object:
        start.wait()
        try:
            return call(i)
        except OrderRejected as rejection:
            return rejection
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_fifty_concurrent_duplicates_make_exactly_one_trade(market, make_trader) -> None:
    trader, _ = make_trader("100000.00")
    results = all_at_once(
        lambda _: place_order(trader=trader, symbol="ACME", side="buy", quantity=7, client_order_id="dup")
    )
    assert all(isinstance(r, OrderResult) for r in results), [r for r in results if not isinstance(r, OrderResult)]
    assert sum(r.created for r in results) == 1  # type: ignore[union-attr]
    assert len({r.order.pk for r in results}) == 1  # type: ignore[union-attr]
    assert Order.objects.filter(trader=trader).count() == 1
    assert Invoice.objects.filter(trader=trader).count() == 1
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("99930.00")
    assert Holding.objects.get(trader=trader).quantity == 7


def test_fifty_concurrent_buys_from_an_account_that_affords_ten_make_exactly_ten(market, make_trader) -> None:
    trader, _ = make_trader("100.00")  # ACME is 10.00: ten single shares
    results = all_at_once(lambda i: place_order(trader=trader, symbol="ACME", side="buy", quantity=1))
    filled = [r for r in results if isinstance(r, OrderResult)]
    refused = [r for r in results if isinstance(r, OrderRejected)]
    assert len(filled) == 10
    assert {r.code for r in refused} == {"insufficient_cash"} and len(refused) == 40
    account = Trader.objects.get(pk=trader.pk)
    assert account.cash == Decimal("0.00") and account.cash >= 0
    assert Order.objects.filter(trader=trader).count() == 10
    assert Holding.objects.get(trader=trader).quantity == 10
    numbers = sorted(Invoice.objects.filter(trader=trader).values_list("number", flat=True))
    assert numbers == list(range(1, 11))  # sequential per trader, no gaps, no repeats


def test_concurrent_sells_never_sell_more_than_is_held(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=5)
    results = all_at_once(lambda i: place_order(trader=trader, symbol="ACME", side="sell", quantity=1), count=20)
    assert sum(isinstance(r, OrderResult) for r in results) == 5
    assert not Holding.objects.filter(trader=trader).exists()
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("1000.00")


def test_fifty_concurrent_buys_from_an_account_with_ample_cash_all_fill(market, make_trader) -> None:
    trader, _ = make_trader("100000.00")
    results = all_at_once(lambda i: place_order(trader=trader, symbol="ACME", side="buy", quantity=2))
    refused = [r for r in results if not isinstance(r, OrderResult)]
    assert refused == []
    assert all(r.created and r.order.status == "filled" for r in results)  # type: ignore[union-attr]
    assert Order.objects.filter(trader=trader, status="filled").count() == CONCURRENCY
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("100000.00") - CONCURRENCY * 20
    assert Holding.objects.get(trader=trader).quantity == 2 * CONCURRENCY
    numbers = sorted(Invoice.objects.filter(trader=trader).values_list("number", flat=True))
    assert numbers == list(range(1, CONCURRENCY + 1))


def test_forty_five_concurrent_sells_of_thirty_held_fill_thirty_and_refuse_fifteen_never_503(
    market, make_trader
) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=30)
    results = all_at_once(lambda i: place_order(trader=trader, symbol="ACME", side="sell", quantity=1), count=45)
    filled = [r for r in results if isinstance(r, OrderResult)]
    refused = [r for r in results if isinstance(r, OrderRejected)]
    assert len(filled) == 30 and all(r.order.status == "filled" for r in filled)
    assert [(r.code, r.status) for r in refused] == [("insufficient_holding", 409)] * 15
    assert not Holding.objects.filter(trader=trader).exists()
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("1000.00")
    assert Order.objects.filter(trader=trader, side="sell").count() == 30


def admission_control() -> object:
    """The ASGI application's admission layer (apps/core/admission.py)."""
    from apps.core.admission import AdmissionControl
    from trading.asgi import application

    layer: object = application.application_mapping["http"]
    while not isinstance(layer, AdmissionControl):
        layer = getattr(layer, "application", None) or layer.app  # type: ignore[attr-defined]
    return layer


def test_forty_five_concurrent_sells_over_http_fill_thirty_and_refuse_fifteen_never_503(
    market, make_trader, monkeypatch
) -> None:
    """The same race through the real ASGI application (one event loop, its reply listener shared). At most
    half of ADMISSION_MAX_IN_FLIGHT requests are in flight at once: past that the process sheds load with its own 503
    (apps/core/admission.py), which is not contention; its event-loop lag bound is off for the same reason (a
    shared test machine lags past 50 ms)."""
    monkeypatch.setattr(admission_control(), "max_lag", 0)
    trader, token = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=30)
    order = {"symbol": "ACME", "side": "sell", "quantity": 1}

    admitted = asyncio.Semaphore(settings.ADMISSION_MAX_IN_FLIGHT // 2)  # a request leaves it after its answer

    async def one() -> tuple[int, dict[bytes, bytes], bytes]:
        async with admitted:
            return await asgi_request("POST", "/api/v1/orders", token, order)

    async def race() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        return await asyncio.gather(*(one() for _ in range(45)))

    answers = async_to_sync(race)()
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [201] * 30 + [409] * 15
    codes = {json.loads(body)["code"] for status, _, body in answers if status == 409}
    assert codes == {"insufficient_holding"}
    assert not Holding.objects.filter(trader=trader).exists()
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("1000.00")
