"""Limit, stop and stop-limit orders: placing, reservations, fills by the matcher, cancel, expiry."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.orders import order_cancel, orders_expire_due
from apps.portfolio.services import OrderRejected, OrderTerms, place_order
from tests.portfolio.matching_fakes import QueuedTicks, matcher_on


@pytest.fixture(autouse=True)
def _no_invoice_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.portfolio import tasks

    monkeypatch.setattr(tasks.generate_invoice, "apply_async", lambda *a, **k: None)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, str, dict]]:
    """Account events published (after commit) through the events module."""
    from apps.portfolio import execution

    published: list[tuple[object, str, dict]] = []
    monkeypatch.setattr(
        execution,
        "publish_account_events",
        lambda trader_id, events, **_: published.extend((trader_id, event, payload) for event, payload in events),
    )
    return published


def limit(price: str, tif: str = "gtc") -> OrderTerms:
    return OrderTerms(type="limit", limit_price=Decimal(price), time_in_force=tif)


def account(trader: Trader) -> Trader:
    return Trader.objects.get(pk=trader.pk)


def test_a_limit_buy_below_the_price_rests_and_reserves_its_cash(market, make_trader, events) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50")).order
    assert (order.status, order.price, order.reserved_cash) == ("open", None, Decimal("95.00"))
    after = account(trader)
    assert (after.cash, after.reserved_cash) == (Decimal("1000.00"), Decimal("95.00"))
    assert not Invoice.objects.exists()
    assert [(event, payload["buying_power"]) for _, event, payload in events] == [("order_accepted", "905.00")]


def test_a_marketable_limit_buy_fills_at_once_at_the_current_price(market, make_trader, events) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("11.00")).order
    assert (order.status, order.price, order.amount) == ("filled", Decimal("10.00"), Decimal("100.00"))
    assert account(trader).cash == Decimal("900.00") and account(trader).reserved_cash == 0
    assert [event for _, event, _ in events] == ["order_accepted", "order_filled"]


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
        (OrderTerms(time_in_force="ioc"), "time_in_force"),
    ],
)
def test_bad_combinations_are_422_naming_the_field(market, make_trader, terms, field) -> None:
    trader, _ = make_trader()
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=1, terms=terms)
    assert (caught.value.status, caught.value.field) == (422, field)
    assert not Order.objects.exists()


def test_the_matcher_fills_a_crossed_buy_at_its_limit_once_and_releases_the_rest(market, make_trader, events) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50")).order
    ticks = QueuedTicks()
    matcher = matcher_on(ticks)
    ticks.tick("ACME", "9.60")
    assert matcher.step() == 0
    ticks.tick("ACME", "9.40")
    ticks.tick("ACME", "9.30")
    assert matcher.step() == 1
    order.refresh_from_db()
    assert (order.status, order.price, order.amount) == ("filled", Decimal("9.50"), Decimal("95.00"))
    after = account(trader)
    assert (after.cash, after.reserved_cash) == (Decimal("905.00"), Decimal("0.00"))
    assert Holding.objects.get(trader=trader).quantity == 10 and Invoice.objects.filter(order=order).count() == 1
    assert [event for _, event, _ in events] == ["order_accepted", "order_filled"]


def test_a_stop_sell_fills_at_the_tick_price_and_a_stop_limit_waits_for_its_limit(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=20)
    stop = OrderTerms(type="stop", stop_price=Decimal("9.00"))
    stop_limit = OrderTerms(type="stop_limit", stop_price=Decimal("9.00"), limit_price=Decimal("8.80"))
    stop_order = place_order(trader=trader, symbol="ACME", side="sell", quantity=10, terms=stop).order
    limit_order = place_order(trader=trader, symbol="ACME", side="sell", quantity=10, terms=stop_limit).order
    ticks = QueuedTicks()
    matcher = matcher_on(ticks)
    ticks.tick("ACME", "8.70")  # crosses both stops; the stop limit then rests as a sell limit at 8.80
    matcher.step()
    stop_order.refresh_from_db()
    limit_order.refresh_from_db()
    assert (stop_order.status, stop_order.price) == ("filled", Decimal("8.70"))
    assert (limit_order.status, limit_order.triggered) == ("open", True)
    ticks.tick("ACME", "8.90")
    matcher.step()
    limit_order.refresh_from_db()
    assert (limit_order.status, limit_order.price) == ("filled", Decimal("8.80"))


def test_a_stop_buy_whose_tick_gaps_past_the_buying_power_is_cancelled_not_filled(market, make_trader, events) -> None:
    trader, _ = make_trader("1000.00")
    # ACME is at 10.00: the limit buy rests, reserving 50.00.
    resting = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("5.00")).order
    stop = OrderTerms(type="stop", stop_price=Decimal("100.00"))
    stop_order = place_order(trader=trader, symbol="ACME", side="buy", quantity=9, terms=stop).order
    assert account(trader).reserved_cash == Decimal("950.00")  # buying power 50.00
    ticks = QueuedTicks()
    matcher = matcher_on(ticks)
    # The stop triggers at 110.00: 9 x 110.00 = 990.00, 40.00 more than its own 900.00 and the 50.00 free.
    ticks.tick("ACME", "110.00")
    assert matcher.step() == 0
    stop_order.refresh_from_db()
    resting.refresh_from_db()
    assert (stop_order.status, stop_order.reason, stop_order.price) == ("cancelled", "insufficient_cash", None)
    assert resting.status == "open"
    after = account(trader)
    assert (after.cash, after.reserved_cash) == (Decimal("1000.00"), Decimal("50.00"))  # only the resting limit's
    assert not Holding.objects.exists() and not Invoice.objects.exists()
    announced = [
        (event, payload["status"], payload["buying_power"])
        for _, event, payload in events
        if payload["id"] == str(stop_order.pk)
    ]
    assert announced == [("order_accepted", "open", "50.00"), ("order_cancelled", "cancelled", "950.00")]


def test_a_restarted_matcher_rereading_ticks_fills_nothing_twice(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50"))
    ticks = QueuedTicks()
    matcher = matcher_on(ticks, fill=lambda order, **_: (_ for _ in ()).throw(SystemExit))  # dies mid-batch
    ticks.tick("ACME", "9.00")
    with pytest.raises(SystemExit):
        matcher.step()
    from apps.portfolio.orders import order_fill

    ticks.crash()
    assert matcher_on(ticks, fill=order_fill).step() == 1  # the unacknowledged tick is read again
    ticks.crash()
    ticks.tick("ACME", "9.00")
    assert matcher_on(ticks).step() == 0
    assert Order.objects.get(status="filled").amount == Decimal("95.00") and Invoice.objects.count() == 1
    assert account(trader).cash == Decimal("905.00")


def test_two_matchers_on_one_crossing_tick_fill_each_order_once(market, make_trader) -> None:
    traders = [make_trader("1000.00")[0] for _ in range(3)]
    for trader in traders:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50"))
    sources = [QueuedTicks(), QueuedTicks()]
    matchers = [matcher_on(source) for source in sources]
    for source in sources:
        source.tick("ACME", "9.00")
    runs = [threading.Thread(target=matcher.step) for matcher in matchers]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sum(m.fills for m in matchers) == 3
    assert Invoice.objects.count() == 3 and Order.objects.filter(status="filled").count() == 3
    assert {account(t).cash for t in traders} == {Decimal("905.00")}


def test_a_cancel_racing_a_fill_ends_in_exactly_one(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50")).order
    ticks = QueuedTicks()
    matcher = matcher_on(ticks)
    ticks.tick("ACME", "9.00")
    outcome: list[object] = []

    def cancel() -> None:
        try:
            outcome.append(order_cancel(trader=trader, order_id=str(order.pk)).status)
        except OrderRejected as rejected:
            outcome.append(rejected.code)

    runs = [threading.Thread(target=matcher.step), threading.Thread(target=cancel)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    order.refresh_from_db()
    after = account(trader)
    assert after.reserved_cash == 0
    if order.status == "filled":
        assert outcome == ["already_filled"] and after.cash == Decimal("905.00") and Invoice.objects.count() == 1
    else:
        assert order.status == "cancelled" and outcome == ["cancelled"] and matcher.fills == 0
        assert after.cash == Decimal("1000.00") and not Invoice.objects.exists()


def test_cancel_releases_the_reservation_and_is_idempotent(market, make_trader, events) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50")).order
    assert order_cancel(trader=trader, order_id=str(order.pk)).status == "cancelled"
    assert order_cancel(trader=trader, order_id=str(order.pk)).status == "cancelled"
    assert account(trader).reserved_cash == 0
    assert [event for _, event, _ in events] == ["order_accepted", "order_cancelled"]
    other, _ = make_trader()
    assert order_cancel(trader=other, order_id=str(order.pk)) is None


def test_a_day_order_expires_after_its_lifetime_and_a_gtc_order_does_not(market, make_trader, events) -> None:
    trader, _ = make_trader("1000.00")
    day = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50", "day")).order
    gtc = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.00", "gtc")).order
    assert orders_expire_due(now=timezone.now()) == 0
    assert orders_expire_due(now=day.expires_at + timedelta(seconds=1)) == 1
    day.refresh_from_db()
    gtc.refresh_from_db()
    assert (day.status, gtc.status) == ("expired", "open")
    assert account(trader).reserved_cash == Decimal("90.00")
    assert events[-1][1] == "order_expired"


def test_a_new_order_the_last_tick_already_crosses_is_filled_when_the_matcher_learns_of_it(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    ticks = QueuedTicks()
    matcher = matcher_on(ticks)
    ticks.tick("BOLT", "20.00")
    matcher.step()  # the quote in Redis still says 25.50: the order rests
    place_order(trader=trader, symbol="BOLT", side="buy", quantity=1, terms=limit("21.00"))
    matcher.step()
    assert Order.objects.get().status == "filled"


def test_the_matcher_expires_a_day_order_when_its_lifetime_ends(market, make_trader, events) -> None:
    trader, _ = make_trader("1000.00")
    clock = {"now": 0}
    ticks = QueuedTicks()
    matcher = matcher_on(ticks, now_ms=lambda: clock["now"])
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=10, terms=limit("9.50", "day")).order
    clock["now"] = int(order.expires_at.timestamp() * 1000) - 1
    matcher.step()
    assert Order.objects.get(pk=order.pk).status == "open"
    clock["now"] += 2
    matcher._next_expiry = 0  # the next check is due (MATCHER_EXPIRY_SECONDS)
    matcher.step()
    assert Order.objects.get(pk=order.pk).status == "expired" and account(trader).reserved_cash == 0
    assert events[-1][1] == "order_expired"
