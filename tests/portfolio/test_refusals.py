"""A burst of one trader's unaffordable market orders shares its first refusal (apps/portfolio/refusals.py).

Each test queues orders behind the trader's lock held by the test itself, waits until every one of them
is waiting, then lets them go: which of them runs first is up to the scheduler, the outcome is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import connection

from apps.core import locks
from apps.core.redis import key as redis_key
from apps.portfolio.models import Order, Trader
from apps.portfolio.orders import order_cancel
from apps.portfolio.services import OrderRejected, OrderResult, OrderTerms, place_order
from tests.mongo_commands import MONGO_COMMANDS
from tests.wait import wait_until


@pytest.fixture(autouse=True)
def _no_invoice_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.portfolio import tasks

    monkeypatch.setattr(tasks.generate_invoice, "apply_async", lambda *a, **k: None)


def _waiting(trader: Trader) -> int:
    """Callers of this process queued on (or holding) the trader's lock."""
    entry = locks._local._locks.get(redis_key("lock", f"trader:{trader.pk}"))
    return 0 if entry is None else entry[1]


@contextmanager
def queued(trader: Trader, calls: list[Callable[[], object]]) -> Iterator[list[Future[object]]]:
    """Run `calls` in threads that all queue behind the trader's lock before any of them gets it."""

    def run(call: Callable[[], object]) -> object:
        try:
            return call()
        except OrderRejected as rejection:
            return rejection
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        with locks.one_at_a_time(f"trader:{trader.pk}", wait_seconds=5):
            futures = [pool.submit(run, call) for call in calls]
            wait_until(lambda: _waiting(trader) == len(calls) + 1, timeout=10, what="every order queued")
        yield futures


def buy(trader: Trader, quantity: int = 1, client_order_id: str | None = None) -> Callable[[], object]:
    return lambda: place_order(
        trader=trader, symbol="ACME", side="buy", quantity=quantity, client_order_id=client_order_id
    )


def test_queued_orders_that_ask_as_much_share_the_first_refusal_without_a_transaction(market, make_trader) -> None:
    trader, _ = make_trader("5.00")  # ACME is 10.00: not even one share
    with MONGO_COMMANDS.recording(every_thread=True) as commands, queued(trader, [buy(trader)] * 20) as futures:
        results = [future.result() for future in futures]
    assert all(isinstance(r, OrderRejected) and r.code == "insufficient_cash" for r in results), results
    assert {str(r) for r in results} == {"not enough buying power for 1 ACME"}
    transactions = [c for c in commands if c.name == "abortTransaction"]
    assert len(transactions) == 1, commands  # the first refusal; the other 19 sent nothing
    assert not Order.objects.filter(trader=trader).exists()


def test_a_smaller_queued_order_is_not_refused_with_a_larger_one(market, make_trader) -> None:
    trader, _ = make_trader("25.00")  # two shares, not three
    with queued(trader, [buy(trader, 3)] * 5 + [buy(trader, 2)]) as futures:
        results = [future.result() for future in futures]
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
    calls = [buy(trader) for _ in range(8)] + [buy(trader, client_order_id="mine")]
    with queued(trader, calls) as futures:
        results = [future.result() for future in futures]
    replay = results[-1]
    assert isinstance(replay, OrderResult) and not replay.created and replay.order.pk == first.pk
    assert all(isinstance(r, OrderRejected) and r.code == "insufficient_cash" for r in results[:-1])


def test_sells_of_unheld_shares_share_the_refusal_too(market, make_trader) -> None:
    trader, _ = make_trader("100.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    sell = lambda: place_order(trader=trader, symbol="ACME", side="sell", quantity=3)  # noqa: E731
    with MONGO_COMMANDS.recording(every_thread=True) as commands, queued(trader, [sell] * 10) as futures:
        results = [future.result() for future in futures]
    assert all(isinstance(r, OrderRejected) and r.code == "insufficient_holding" for r in results), results
    assert len([c for c in commands if c.name == "abortTransaction"]) == 1
