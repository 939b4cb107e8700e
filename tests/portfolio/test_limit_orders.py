"""Limit, stop and stop-limit orders: placing, reservations, fills by the engine on ticks, cancel, expiry.

Ticks are `set_quotes` (every quote write is also a tick command on every shard's stream); the engine fills
on its own thread, so a test waits for the fill's condition (tests/wait.py).
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from typing import Any

import pytest

from apps.core import account_events
from apps.core.redis import redis_client
from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.services import OrderRejected, OrderTerms, order_cancel, place_order
from tests.conftest import EngineThread
from tests.portfolio.conftest import set_quotes
from tests.wait import wait_until


def announced(trader: Trader) -> list[tuple[str, dict[str, Any]]]:
    """The trader's account events, as the engine published them (after each batch's commit)."""
    entries = redis_client().xrange(account_events.history_key(trader.user_id))
    return [(event["event"], event) for event in (json.loads(fields[b"f"]) for _id, fields in entries)]


def order_events(trader: Trader) -> list[str]:
    return [name for name, _ in announced(trader) if name != "invoice_ready"]


def status_of(order: Order) -> str:
    return Order.objects.get(pk=order.pk).status


def limit(price: str, tif: str = "gtc") -> OrderTerms:
    return OrderTerms(type="limit", limit_price=Decimal(price), time_in_force=tif)


def account(trader: Trader) -> Trader:
    return Trader.objects.get(pk=trader.pk)


def test_a_limit_buy_below_the_price_rests_and_reserves_its_cash(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50")).order
    assert (order.status, order.price, order.reserved_cash) == ("open", None, Decimal("95.00"))
    after = account(trader)
    assert (after.cash, after.reserved_cash) == (Decimal("1000.00"), Decimal("95.00"))
    assert not Invoice.objects.exists()
    assert [(event, payload["buying_power"]) for event, payload in announced(trader)] == [("order_accepted", "905.00")]


def test_a_marketable_limit_buy_fills_at_once_at_the_current_price(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("11.00")).order
    assert (order.status, order.price, order.amount) == ("filled", Decimal("10.00"), Decimal("100.00"))
    assert account(trader).cash == Decimal("900.00") and account(trader).reserved_cash == 0
    assert order_events(trader) == ["order_accepted", "order_filled"]


def test_a_buy_beyond_the_buying_power_is_refused_and_writes_nothing(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=90, terms=limit("9.00"))  # holds 810
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=30, terms=limit("9.00"))
    assert (caught.value.code, caught.value.status) == ("insufficient_buying_power", 409)
    with pytest.raises(OrderRejected) as market_buy:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=20)  # 200 > 190 free
    assert market_buy.value.code == "insufficient_cash"
    assert Order.objects.count() == 1 and account(trader).reserved_cash == Decimal("810.00")


def test_a_resting_sell_reserves_shares_that_cannot_be_sold_twice(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=10)
    place_order(trader=trader, symbol="ACME", side="sell", quantity=8, terms=limit("12.00"))
    assert Holding.objects.get(trader=trader).reserved == 8
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, symbol="ACME", side="sell", quantity=3)
    assert caught.value.code == "insufficient_holding"
    assert place_order(trader=trader, symbol="ACME", side="sell", quantity=2).order.status == "filled"


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        (OrderTerms(type="limit"), "limit_price"),
        (OrderTerms(type="limit", limit_price=Decimal("1"), stop_price=Decimal("1")), "stop_price"),
        (OrderTerms(type="stop"), "stop_price"),
        (OrderTerms(type="stop_limit", stop_price=Decimal("1")), "limit_price"),
        (OrderTerms(type="market", limit_price=Decimal("1")), "limit_price"),
        (OrderTerms(type="limit", limit_price=Decimal("1.001")), "limit_price"),
        (OrderTerms(type="limit", limit_price=Decimal("-1")), "limit_price"),
        (OrderTerms(type="iceberg"), "type"),
        (OrderTerms(time_in_force="never"), "time_in_force"),
        (OrderTerms(type="stop", stop_price=Decimal("11"), time_in_force="ioc"), "time_in_force"),
        (
            OrderTerms(type="stop_limit", stop_price=Decimal("9"), limit_price=Decimal("9"), time_in_force="fok"),
            "time_in_force",
        ),
    ],
)
def test_bad_combinations_are_422_naming_the_field(market, make_trader, terms, field) -> None:
    trader, _ = make_trader()
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=1, terms=terms)
    assert (caught.value.status, caught.value.field) == (422, field)
    assert not Order.objects.exists()


@pytest.mark.parametrize("tif", ["ioc", "fok"])
def test_an_immediate_limit_that_cannot_fill_now_is_cancelled_at_once_and_holds_nothing(
    market, make_trader, tif
) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50", tif)).order
    assert (order.status, order.reason, order.reserved_cash) == ("cancelled", f"{tif}_unfilled", Decimal("0.00"))
    assert (Order.objects.get(pk=order.pk).status, account(trader).cash, account(trader).reserved_cash) == (
        "cancelled",
        Decimal("1000.00"),
        Decimal("0.00"),
    )
    assert order_events(trader) == ["order_accepted", "order_cancelled"]
    set_quotes({"ACME": "9.00"})  # a tick through its limit later fills nothing: it never rested
    set_quotes({"BOLT": "25.00"})
    wait_until(lambda: engine_price("BOLT") == 2500, what="the engines to see BOLT at 25.00")
    assert status_of(order) == "cancelled" and not Invoice.objects.exists()


@pytest.mark.parametrize("tif", ["ioc", "fok"])
def test_an_immediate_order_that_can_fill_fills_at_the_current_price(market, make_trader, tif) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("10.50", tif)).order
    assert (order.status, order.price) == ("filled", Decimal("10.00"))
    sold = place_order(trader=trader, symbol="ACME", side="sell", quantity=4, terms=OrderTerms(time_in_force=tif))
    assert (sold.order.status, account(trader).cash) == ("filled", Decimal("940.00"))


def test_an_immediate_order_gets_the_checks_of_a_resting_one(market, make_trader) -> None:
    trader, _ = make_trader("100.00")
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=20, terms=limit("9.00", "ioc"))
    assert caught.value.code == "insufficient_buying_power"
    with pytest.raises(OrderRejected) as selling:
        place_order(trader=trader, symbol="ACME", side="sell", quantity=1, terms=limit("11.00", "fok"))
    assert selling.value.code == "insufficient_holding"
    place_order(trader=trader, symbol="ACME", side="buy", quantity=5)
    unfilled = place_order(trader=trader, symbol="ACME", side="sell", quantity=5, terms=limit("11.00", "ioc")).order
    assert unfilled.status == "cancelled" and Holding.objects.get(trader=trader).reserved == 0
    assert not Order.objects.filter(status="open").exists()


def test_a_tick_crossing_a_resting_buy_fills_it_at_its_limit_once_and_releases_the_rest(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50")).order
    set_quotes({"ACME": "9.60"})
    set_quotes({"BOLT": "25.00"})  # a later tick on the same streams: once BOLT moved, 9.60 was decided
    wait_until(lambda: engine_price("BOLT") == 2500, what="the engines to see BOLT at 25.00")
    assert status_of(order) == "open"
    set_quotes({"ACME": "9.40"})
    set_quotes({"ACME": "9.30"})
    wait_until(lambda: status_of(order) == "filled", what="the fill")
    order.refresh_from_db()
    assert (order.status, order.price, order.amount) == ("filled", Decimal("9.50"), Decimal("95.00"))
    after = account(trader)
    assert (after.cash, after.reserved_cash) == (Decimal("905.00"), Decimal("0.00"))
    assert Holding.objects.get(trader=trader).quantity == 10 and Invoice.objects.filter(order=order).count() == 1
    assert order_events(trader) == ["order_accepted", "order_filled"]


ENGINES: list[EngineThread] = []


@pytest.fixture(autouse=True)
def _engines(order_engine: list[EngineThread]) -> Any:
    ENGINES[:] = order_engine
    yield
    ENGINES.clear()


def engine_price(symbol: str) -> int | None:
    """The price every shard's engine last saw (cents), when they agree."""
    prices = {running.engine.state.prices.get(symbol) for running in ENGINES}
    return prices.pop() if len(prices) == 1 else None


def test_a_stop_sell_fills_at_the_tick_price_and_a_stop_limit_waits_for_its_limit(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=20)
    stop = OrderTerms(type="stop", stop_price=Decimal("9.00"))
    stop_limit = OrderTerms(type="stop_limit", stop_price=Decimal("9.00"), limit_price=Decimal("8.80"))
    stop_order = place_order(trader=trader, symbol="ACME", side="sell", quantity=10, terms=stop).order
    limit_order = place_order(trader=trader, symbol="ACME", side="sell", quantity=10, terms=stop_limit).order
    set_quotes({"ACME": "8.70"})  # crosses both stops; the stop limit then rests as a sell limit at 8.80
    wait_until(lambda: status_of(stop_order) == "filled", what="the stop's fill")
    stop_order.refresh_from_db()
    limit_order.refresh_from_db()
    assert stop_order.price == Decimal("8.70")
    assert (limit_order.status, limit_order.triggered) == ("open", True)
    set_quotes({"ACME": "8.90"})
    wait_until(lambda: status_of(limit_order) == "filled", what="the stop limit's fill")
    limit_order.refresh_from_db()
    assert limit_order.price == Decimal("8.80")
    assert not Holding.objects.filter(trader=trader).exists()


def test_a_stop_buy_whose_tick_gaps_past_the_buying_power_is_cancelled_not_filled(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    # ACME is at 10.00: the limit buy rests, reserving 50.00.
    resting = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("5.00")).order
    stop = OrderTerms(type="stop", stop_price=Decimal("100.00"))
    stop_order = place_order(trader=trader, symbol="ACME", side="buy", quantity=9, terms=stop).order
    assert account(trader).reserved_cash == Decimal("950.00")  # buying power 50.00
    # The stop triggers at 110.00: 9 x 110.00 = 990.00, 40.00 more than its own 900.00 and the 50.00 free.
    set_quotes({"ACME": "110.00"})
    wait_until(lambda: status_of(stop_order) != "open", what="the stop's outcome")
    stop_order.refresh_from_db()
    resting.refresh_from_db()
    assert (stop_order.status, stop_order.reason, stop_order.price) == ("cancelled", "insufficient_cash", None)
    assert resting.status == "open"
    after = account(trader)
    assert (after.cash, after.reserved_cash) == (Decimal("1000.00"), Decimal("50.00"))  # only the resting limit's
    assert not Holding.objects.exists() and not Invoice.objects.exists()
    events = [
        (event, payload["status"], payload["buying_power"])
        for event, payload in announced(trader)
        if payload["id"] == str(stop_order.pk)
    ]
    assert events == [("order_accepted", "open", "50.00"), ("order_cancelled", "cancelled", "950.00")]


def test_an_engine_that_crashed_after_committing_a_fill_rereads_the_tick_and_fills_nothing_twice(
    market, make_trader, monkeypatch
) -> None:
    """The batch committed, then publishing died (nothing acknowledged): the reloaded engine reads the tick
    again and skips it (up to its checkpoint), so the order fills once."""
    from apps.portfolio.engine import runner

    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50"))
    real = runner.publish
    crashes = iter([ConnectionError("killed after the commit")])

    def dying(*args: Any, **kwargs: Any) -> None:
        if args[1].invoices and (crash := next(crashes, None)) is not None:  # the fill's batch, committed
            raise crash
        real(*args, **kwargs)

    monkeypatch.setattr(runner, "publish", dying)
    set_quotes({"ACME": "9.00"})
    wait_until(lambda: Order.objects.filter(status="filled").exists(), what="the fill")
    set_quotes({"ACME": "9.00"})  # another crossing tick: nothing is left to fill
    set_quotes({"BOLT": "25.00"})
    wait_until(lambda: engine_price("BOLT") == 2500, what="the engines to pass the second tick")
    assert next(crashes, None) is None  # it did crash once
    assert Order.objects.get(status="filled").amount == Decimal("95.00") and Invoice.objects.count() == 1
    assert account(trader).cash == Decimal("905.00")


def test_one_crossing_tick_fills_every_crossed_order_of_every_shard_once(market, make_trader) -> None:
    traders = [make_trader("1000.00")[0] for _ in range(6)]  # over both shards
    for trader in traders:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50"))
    set_quotes({"ACME": "9.00"})
    wait_until(lambda: Order.objects.filter(status="filled").count() == 6, what="six fills")
    set_quotes({"ACME": "9.00"})
    set_quotes({"BOLT": "25.00"})
    wait_until(lambda: engine_price("BOLT") == 2500, what="the engines to pass the second tick")
    assert Invoice.objects.count() == 6 and Order.objects.filter(status="filled").count() == 6
    assert {account(t).cash for t in traders} == {Decimal("905.00")}


def test_a_cancel_racing_a_fill_ends_in_exactly_one(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50")).order
    outcome: list[object] = []
    start = threading.Barrier(2)

    def cancel() -> None:
        start.wait()
        try:
            outcome.append(order_cancel(trader=trader, order_id=str(order.pk)).status)  # type: ignore[union-attr]
        except OrderRejected as rejected:
            outcome.append(rejected.code)

    def tick() -> None:
        start.wait()
        set_quotes({"ACME": "9.00"})

    runs = [threading.Thread(target=tick), threading.Thread(target=cancel)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    wait_until(lambda: engine_price("ACME") == 900, what="the engines to see the tick")
    order.refresh_from_db()
    after = account(trader)
    assert after.reserved_cash == 0
    if order.status == "filled":
        assert outcome == ["already_filled"] and after.cash == Decimal("905.00") and Invoice.objects.count() == 1
    else:
        assert order.status == "cancelled" and outcome == ["cancelled"]
        assert after.cash == Decimal("1000.00") and not Invoice.objects.exists()


def test_cancel_releases_the_reservation_and_is_idempotent(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50")).order
    assert order_cancel(trader=trader, order_id=str(order.pk)).status == "cancelled"  # type: ignore[union-attr]
    assert order_cancel(trader=trader, order_id=str(order.pk)).status == "cancelled"  # type: ignore[union-attr]
    assert account(trader).reserved_cash == 0
    assert order_events(trader) == ["order_accepted", "order_cancelled"]
    other, _ = make_trader()
    assert order_cancel(trader=other, order_id=str(order.pk)) is None


def test_a_day_order_expires_after_its_lifetime_and_a_gtc_order_does_not(market, make_trader) -> None:
    for running in ENGINES:
        running.engine.day_ms = 300  # a day of 0.3 s
    trader, _ = make_trader("1000.00")
    day = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50", "day")).order
    gtc = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.00", "gtc")).order
    assert day.expires_at is not None and gtc.expires_at is None
    wait_until(lambda: status_of(day) == "expired", what="the day order's expiry")
    assert status_of(gtc) == "open"
    assert account(trader).reserved_cash == Decimal("90.00")
    assert order_events(trader)[-1] == "order_expired"


def test_a_new_order_the_last_tick_already_crosses_fills_at_once_at_that_tick(market, make_trader) -> None:
    """The quote and the tick are one write: the engine decides the order after the tick it follows."""
    trader, _ = make_trader("1000.00")
    set_quotes({"BOLT": "20.00"})
    order = place_order(trader=trader, symbol="BOLT", side="buy", quantity=1, terms=limit("21.00")).order
    assert (order.status, order.price) == ("filled", Decimal("20.00"))
