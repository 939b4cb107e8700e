"""Orders under contention, against the real embedded MongoDB: threads with their own connections."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection

from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.services import OrderRejected, OrderResult, place_order

CONCURRENCY = 50


@pytest.fixture(autouse=True)
def _no_invoice_jobs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from apps.portfolio import tasks

    sent: list[str] = []
    monkeypatch.setattr(tasks.generate_invoice, "apply_async", lambda args=(), **_: sent.append(args[0]))
    return sent


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


def test_fifty_concurrent_duplicates_make_exactly_one_trade(market, make_trader, _no_invoice_jobs) -> None:
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
    assert len(_no_invoice_jobs) == 1


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
