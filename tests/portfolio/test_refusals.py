"""Refusals decided by the order engine: a burst of one trader's orders, sent at once from many threads, is
sequenced by the trader's shard; each order is decided against what the ones before it left, so the burst
fills what the account affords and refuses the rest, whatever order the threads arrive in."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection

from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.services import OrderRejected, OrderResult, OrderTerms, order_cancel, place_order


def at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Run `calls` in threads released together; each one's result, or the OrderRejected it raised."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> object:
        start.wait(timeout=10)
        try:
            return call()
        except OrderRejected as rejection:
            return rejection
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result(timeout=60) for future in [pool.submit(run, call) for call in calls]]


def buy(trader: Trader, quantity: int = 1, client_order_id: str | None = None) -> Callable[[], object]:
    return lambda: place_order(
        trader=trader, symbol="ACME", side="buy", quantity=quantity, client_order_id=client_order_id
    )


def test_fifty_concurrent_buys_of_a_trader_who_affords_ten_fill_ten_and_refuse_forty(market, make_trader) -> None:
    trader, _ = make_trader("100.00")  # ACME is 10.00: ten shares
    results = at_once([buy(trader)] * 50)
    filled = [r for r in results if isinstance(r, OrderResult)]
    refused = [r for r in results if isinstance(r, OrderRejected)]
    assert len(filled) == 10 and all(r.created and r.order.status == "filled" for r in filled), refused
    assert len(refused) == 40 and {(r.code, r.status) for r in refused} == {("insufficient_cash", 409)}
    account = Trader.objects.get(pk=trader.pk)
    assert (account.cash, account.reserved_cash) == (Decimal("0.00"), Decimal("0.00"))
    assert Holding.objects.get(trader=trader, symbol="ACME").quantity == 10
    assert Order.objects.filter(trader=trader).count() == 10
    assert sorted(Invoice.objects.filter(trader=trader).values_list("number", flat=True)) == list(range(1, 11))


def test_a_smaller_concurrent_order_is_not_refused_with_larger_ones(market, make_trader) -> None:
    trader, _ = make_trader("25.00")  # two shares, not three
    results = at_once([buy(trader, 3)] * 5 + [buy(trader, 2)])
    filled = [r for r in results if isinstance(r, OrderResult)]
    assert [r.order.quantity for r in filled] == [2]
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("5.00")


def test_an_order_placed_after_a_refusal_sees_the_cash_a_cancel_freed(market, make_trader) -> None:
    trader, _ = make_trader("100.00")
    resting = place_order(
        trader=trader, symbol="ACME", side="buy", quantity=10, terms=OrderTerms(type="limit", limit_price=Decimal("9"))
    ).order  # reserves 90.00 of the 100.00
    with pytest.raises(OrderRejected) as refused:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    assert refused.value.code == "insufficient_cash"
    order_cancel(trader=trader, order_id=str(resting.pk))
    assert place_order(trader=trader, symbol="ACME", side="buy", quantity=2).order.status == "filled"


def test_a_repeated_client_order_id_in_a_refused_burst_answers_with_its_order(market, make_trader) -> None:
    trader, _ = make_trader("10.00")
    first = place_order(trader=trader, symbol="ACME", side="buy", quantity=1, client_order_id="mine").order
    results = at_once([buy(trader) for _ in range(8)] + [buy(trader, client_order_id="mine")])
    replay = results[-1]
    assert isinstance(replay, OrderResult) and not replay.created and replay.order.pk == first.pk
    assert all(isinstance(r, OrderRejected) and r.code == "insufficient_cash" for r in results[:-1])


def test_concurrent_sells_of_unheld_shares_are_all_refused(market, make_trader) -> None:
    trader, _ = make_trader("100.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    sell = lambda: place_order(trader=trader, symbol="ACME", side="sell", quantity=3)  # noqa: E731
    results = at_once([sell] * 10)
    assert all(isinstance(r, OrderRejected) and r.code == "insufficient_holding" for r in results), results
    assert Holding.objects.get(trader=trader, symbol="ACME").quantity == 2
