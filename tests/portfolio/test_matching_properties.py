"""Hypothesis properties of resting orders and the matcher (42-45), on the real embedded MongoDB.

Each example drives one trader through any interleaving of orders (limit, stop, stop limit; buy and
sell; day and gtc), ticks, cancels, expiry sweeps and matcher crashes (a crash after a committed fill,
before the tick is acknowledged: the restarted matcher reads it again). The real services, the real
matcher and the real transactions do the work; only the tick stream is an in-memory queue.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.orders import order_cancel, order_fill, orders_expire_due
from apps.portfolio.services import OrderRejected, OrderTerms, place_order
from tests.portfolio.conftest import set_quotes
from tests.portfolio.matching_fakes import QueuedTicks, matcher_on

PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
START_CASH, START_SHARES, START_PRICE = Decimal("1500.00"), 40, Decimal("10.00")
cents = st.integers(900, 1100).map(lambda c: Decimal(c).scaleb(-2))
placements = st.tuples(
    st.just("place"),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["limit", "stop", "stop_limit"]),
    cents,
    cents,
    st.integers(1, 30),
    st.sampled_from(["day", "gtc"]),
)
actions = st.lists(
    st.one_of(
        placements,
        st.tuples(st.just("tick"), cents),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("crash")),
        st.tuples(st.just("expire")),
    ),
    min_size=1,
    max_size=10,
)


@pytest.fixture(autouse=True)
def _no_invoice_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.portfolio import tasks

    monkeypatch.setattr(tasks.generate_invoice, "apply_async", lambda *a, **k: None)


@dataclass
class Run:
    trader: Trader
    orders: list[Order] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # account and book after every step


def _dying_fill(order: Order, **kwargs: Any) -> bool:
    order_fill(order, **kwargs)
    raise SystemExit("matcher killed after a committed fill, before acknowledging its tick")


def _snapshot(run: Run) -> dict[str, Any]:
    trader = Trader.objects.get(pk=run.trader.pk)
    orders = list(Order.objects.filter(trader=trader))
    holding = Holding.objects.filter(trader=trader, symbol="ACME").first()
    return {"trader": trader, "orders": orders, "holding": holding}


def _terms(kind: str, first: Decimal, second: Decimal, tif: str) -> OrderTerms:
    if kind == "limit":
        return OrderTerms(type="limit", limit_price=first, time_in_force=tif)
    if kind == "stop":
        return OrderTerms(type="stop", stop_price=first, time_in_force=tif)
    return OrderTerms(type="stop_limit", stop_price=first, limit_price=second, time_in_force=tif)


def drive(make_trader: Any, steps: list[tuple[Any, ...]]) -> Run:
    """Play `steps`, then cancel whatever still rests; snapshots after every step."""
    set_quotes({"ACME": START_PRICE})
    trader, _ = make_trader(str(START_CASH + START_PRICE * START_SHARES))
    place_order(trader=trader, symbol="ACME", side="buy", quantity=START_SHARES)
    run = Run(trader)
    ticks = QueuedTicks()
    matcher = matcher_on(ticks)
    for step in steps:
        if step[0] == "place":
            _, side, kind, first, second, quantity, tif = step
            try:
                terms = _terms(kind, first, second, tif)
                placed = place_order(trader=trader, symbol="ACME", side=side, quantity=quantity, terms=terms)
                run.orders.append(placed.order)
            except OrderRejected as refused:
                assert refused.code in {"insufficient_buying_power", "insufficient_holding", "insufficient_cash"}
        elif step[0] == "tick":
            set_quotes({"ACME": step[1]})
            ticks.tick("ACME", step[1])
        elif step[0] == "cancel" and run.orders:
            try:
                order_cancel(trader=trader, order_id=str(run.orders[step[1] % len(run.orders)].pk))
            except OrderRejected as refused:
                assert refused.code == "already_filled"
        elif step[0] == "crash":
            matcher.fill = _dying_fill
            with contextlib.suppress(SystemExit):
                matcher.step()
            ticks.crash()
            matcher = matcher_on(ticks)
        elif step[0] == "expire":
            orders_expire_due(now=timezone.now() + timedelta(days=1))
        matcher.step()
        run.snapshots.append(_snapshot(run))
    for order in run.orders:  # close the example: nothing it placed may rest into the next one
        with contextlib.suppress(OrderRejected):
            order_cancel(trader=trader, order_id=str(order.pk))
    run.snapshots.append(_snapshot(run))
    return run


@PROPERTY_SETTINGS
@given(steps=actions)
def test_property_42_every_order_ends_in_exactly_one_terminal_state(market, make_trader, steps) -> None:
    """Feature: trading-performance-optimization, Property 42: For any interleaving of ticks, orders, cancels and
    matcher crashes, each order ends in exactly one terminal state (filled, cancelled or expired), a filled order
    has exactly one trade and one invoice, and an order never leaves a terminal state."""
    run = drive(make_trader, steps)
    final = {o.pk: o for o in run.snapshots[-1]["orders"]}
    for order in run.orders:
        assert final[order.pk].status in {"filled", "cancelled", "expired"}
    for earlier in run.snapshots:
        for order in earlier["orders"]:
            if order.status != "open":
                assert final[order.pk].status == order.status  # a terminal state is final
    filled = {pk for pk, o in final.items() if o.status == "filled"}
    invoices = list(Invoice.objects.filter(trader=run.trader).values_list("order_id", flat=True))
    assert sorted(invoices) == sorted(filled)  # one invoice per fill: nothing filled twice, nothing unfilled billed


@PROPERTY_SETTINGS
@given(steps=actions)
def test_property_43_fills_happen_only_at_allowed_prices(market, make_trader, steps) -> None:
    """Feature: trading-performance-optimization, Property 43: For any interleaving of ticks, orders, cancels and
    matcher crashes, an order fills only at an allowed price: a limit (or triggered stop limit) buy at or below its
    limit and a sell at or above it; a stop market buy at or above its stop and a sell at or below it."""
    run = drive(make_trader, steps)
    for order in run.snapshots[-1]["orders"]:
        if order.status != "filled" or order.type == "market":
            continue
        buy = order.side == "buy"
        if order.type in ("limit", "stop_limit"):
            assert order.price <= order.limit_price if buy else order.price >= order.limit_price
        if order.type == "stop":
            assert order.price >= order.stop_price if buy else order.price <= order.stop_price
        assert order.amount == (order.price * order.quantity).quantize(Decimal("0.01"))


@PROPERTY_SETTINGS
@given(steps=actions)
def test_property_44_reserved_plus_available_equals_the_accounts_totals(market, make_trader, steps) -> None:
    """Feature: trading-performance-optimization, Property 44: For any interleaving of ticks, orders, cancels and
    matcher crashes, after every step the reserved cash equals what the open buy orders hold, reserved shares equal
    what the open sell orders hold, and reserved + available equals the account's cash and shares as moved by fills."""
    run = drive(make_trader, steps)
    for snapshot in run.snapshots:
        trader, orders, holding = snapshot["trader"], snapshot["orders"], snapshot["holding"]
        open_orders = [o for o in orders if o.status == "open"]
        assert trader.reserved_cash == sum((o.reserved_cash for o in open_orders if o.side == "buy"), Decimal(0))
        reserved_shares = sum(o.quantity for o in open_orders if o.side == "sell")
        assert (holding.reserved if holding else 0) == reserved_shares
        fills = [o for o in orders if o.status == "filled"]
        spent = sum((o.amount if o.side == "buy" else -o.amount for o in fills), Decimal(0))
        assert trader.cash == START_CASH + START_PRICE * START_SHARES - spent
        shares = sum(o.quantity if o.side == "buy" else -o.quantity for o in fills)
        assert (holding.quantity if holding else 0) == shares
    assert run.snapshots[-1]["trader"].reserved_cash == 0


@PROPERTY_SETTINGS
@given(steps=actions)
def test_property_45_buying_power_never_goes_negative(market, make_trader, steps) -> None:
    """Feature: trading-performance-optimization, Property 45: For any interleaving of ticks, orders, cancels and
    matcher crashes, buying power (cash - reserved cash) and unreserved shares never go below zero."""
    run = drive(make_trader, steps)
    for snapshot in run.snapshots:
        trader, holding = snapshot["trader"], snapshot["holding"]
        assert trader.cash - trader.reserved_cash >= 0
        assert holding is None or holding.quantity - holding.reserved >= 0
