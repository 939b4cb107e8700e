"""Hypothesis properties of resting orders and matching (42-45), on the engine's pure rules.

Each example drives one account through any interleaving of orders (limit, stop, stop limit; buy and
sell; day, gtc, ioc and fok), cancel-alls and position closes, ticks, cancels, expiry and engine crashes,
deciding each command with apps/portfolio/engine/rules.decide on an EngineState: no I/O, so hundreds of
examples take seconds. A crash rebuilds the state from what the batches wrote (the effects, as the
journal stores them), the way a restarted engine loads it from MongoDB: whatever the rules forgot to
write is lost there.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.portfolio.engine.commands import Caller, Cancel, CancelAll, Close, Expire, Place, Ticks
from apps.portfolio.engine.effects import Effects
from apps.portfolio.engine.rules import decide
from apps.portfolio.engine.state import Account, EngineState, OrderState, Position

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
START_CASH, START_SHARES, START_PRICE = 150_000, 40, 1000  # cents, shares, cents
DAY_MS = 1_000
cents = st.integers(900, 1100)
placements = st.tuples(
    st.just("place"),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["limit", "stop", "stop_limit"]),
    cents,
    cents,
    st.integers(1, 30),
    st.sampled_from(["day", "gtc", "ioc", "fok"]),
)
actions = st.lists(
    st.one_of(
        placements,
        st.tuples(st.just("market"), st.sampled_from(["buy", "sell"]), st.integers(1, 30)),
        st.tuples(st.just("tick"), cents),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("cancel_all"), st.none() | st.just("ACME")),
        st.tuples(st.just("close"), st.none() | st.integers(1, 100), st.booleans()),
        st.tuples(st.just("crash")),
        st.tuples(st.just("expire")),
    ),
    min_size=1,
    max_size=25,
)
REFUSALS = {"insufficient_buying_power", "insufficient_holding", "insufficient_cash", "no_position", "invalid_percent"}


@dataclass
class Journal:
    """What the batches wrote: accounts, positions, orders (copies), invoices."""

    accounts: dict[ObjectId, tuple[int, int, int]] = field(default_factory=dict)
    positions: dict[tuple[ObjectId, str], Position] = field(default_factory=dict)
    orders: dict[ObjectId, OrderState] = field(default_factory=dict)
    invoices: list[ObjectId] = field(default_factory=list)

    def write(self, state: EngineState, effects: Effects) -> None:
        for account in effects.accounts.values():
            self.accounts[account.id] = (account.cash, account.reserved, account.invoice_sequence)
        for account_id, symbol in effects.positions:
            held = state.accounts[account_id].positions.get(symbol)
            if held is None:
                self.positions.pop((account_id, symbol), None)
            else:
                self.positions[(account_id, symbol)] = copy.copy(held)
        for order in [*effects.new_orders.values(), *effects.changed_orders.values()]:
            self.orders[order.id] = dataclasses.replace(order)
        self.invoices += [invoice.order_id for invoice in effects.invoices]

    def load(self, shard: int, user_id: ObjectId, prices: dict[str, int]) -> EngineState:
        """A restarted engine's state: accounts with their positions and client ids, open orders rested."""
        state = EngineState(shard, prices=dict(prices))
        for account_id, (cash, reserved, sequence) in self.accounts.items():
            account = Account(account_id, user_id, cash, reserved, sequence)
            account.positions = {s: copy.copy(p) for (a, s), p in self.positions.items() if a == account_id}
            account.client_orders = {
                o.client_order_id: o.id for o in self.orders.values() if o.account_id == account_id
            }
            state.accounts[account_id] = account
        for order in self.orders.values():
            copied = dataclasses.replace(order)
            if copied.status == "open":
                state.rest(copied)
            else:
                state.remember(copied)
        return state


@dataclass
class Run:
    account_id: ObjectId
    journal: Journal
    orders: list[ObjectId] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # the account and orders after every step


def _snapshot(state: EngineState, run: Run) -> dict[str, Any]:
    account = copy.deepcopy(state.accounts[run.account_id])
    orders = [dataclasses.replace(state.order(o)) for o in run.orders]  # type: ignore[type-var]
    return {"account": account, "orders": orders, "journal": copy.deepcopy(run.journal)}


def _place(step: tuple[Any, ...], number: int, caller: Caller) -> Place:
    if step[0] == "market":
        _, side, quantity = step
        return Place(caller, f"c{number}", "ACME", side, quantity)
    _, side, kind, first, second, quantity, tif = step
    limit_cents = first if kind == "limit" else second if kind == "stop_limit" else None
    stop_cents = first if kind in ("stop", "stop_limit") else None
    return Place(caller, f"c{number}", "ACME", side, quantity, kind, limit_cents, stop_cents, tif)


def drive(steps: list[tuple[Any, ...]]) -> Run:
    """Play `steps`, then cancel whatever still rests; a snapshot after every step."""
    account_id, user_id = ObjectId(), ObjectId()
    caller = Caller(account_id, user_id, "r", "to")
    state = EngineState(0, prices={"ACME": START_PRICE})
    account = Account(account_id, user_id, START_CASH, 0, 0)
    account.positions["ACME"] = Position(START_SHARES, Decimal("10.0000"))
    state.accounts[account_id] = account
    run = Run(account_id, Journal())
    run.journal.write(state, Effects(accounts={account_id: account}, positions={(account_id, "ACME")}))
    at_ms = 1_000_000

    def apply(command: Any) -> Effects:
        nonlocal at_ms
        at_ms += 7
        effects = Effects()
        decide(state, command, effects, at_ms=at_ms, entry=f"{at_ms}-0", sign=lambda o, n: f"{o.id}:{n}", day_ms=DAY_MS)
        run.journal.write(state, effects)
        return effects

    for number, step in enumerate(steps):
        if step[0] in ("place", "market"):
            effects = apply(_place(step, number, caller))
            (reply,) = effects.replies
            if "order" in reply.body:
                run.orders.append(ObjectId(reply.body["order"]["id"]))
            else:
                assert reply.body["code"] in REFUSALS, reply
        elif step[0] == "tick":
            apply(Ticks((("ACME", step[1]),)))
        elif step[0] == "cancel" and run.orders:
            apply(Cancel(caller, run.orders[step[1] % len(run.orders)]))
        elif step[0] == "cancel_all":
            apply(CancelAll(caller, step[1]))
        elif step[0] == "close":
            (reply,) = apply(Close(caller, f"c{number}", "ACME", percent=step[1], cancel_orders=step[2])).replies
            if "order" in reply.body:
                run.orders.append(ObjectId(reply.body["order"]["id"]))
            else:
                assert reply.body["code"] in REFUSALS, reply
        elif step[0] == "crash":
            state = run.journal.load(0, user_id, state.prices)
        elif step[0] == "expire":
            apply(Expire(at_ms + DAY_MS))
        run.snapshots.append(_snapshot(state, run))
    for order_id in run.orders:  # close the example: every resting order is cancelled
        apply(Cancel(caller, order_id))
    run.snapshots.append(_snapshot(state, run))
    return run


@PROPERTY_SETTINGS
@given(steps=actions)
def test_property_42_every_order_ends_in_exactly_one_terminal_state(steps) -> None:
    """Feature: trading-performance-optimization, Property 42: For any interleaving of ticks, orders, cancels and
    matcher crashes, each order ends in exactly one terminal state (filled, cancelled or expired), a filled order
    has exactly one trade and one invoice, and an order never leaves a terminal state."""
    run = drive(steps)
    final = {o.id: o for o in run.snapshots[-1]["orders"]}
    for order_id in run.orders:
        assert final[order_id].status in {"filled", "cancelled", "expired"}
    for earlier in run.snapshots:
        for order in earlier["orders"]:
            if order.status != "open":
                assert final[order.id].status == order.status  # a terminal state is final
    filled = sorted(order_id for order_id, o in final.items() if o.status == "filled")
    assert sorted(run.journal.invoices) == filled  # one invoice per fill: nothing filled twice, nothing unfilled billed
    assert {o.id: o.status for o in run.journal.orders.values()} == {i: o.status for i, o in final.items()}


@PROPERTY_SETTINGS
@given(steps=actions)
def test_property_43_fills_happen_only_at_allowed_prices(steps) -> None:
    """Feature: trading-performance-optimization, Property 43: For any interleaving of ticks, orders, cancels and
    matcher crashes, an order fills only at an allowed price: a limit (or triggered stop limit) buy at or below its
    limit and a sell at or above it; a stop market buy at or above its stop and a sell at or below it."""
    run = drive(steps)
    for order in run.snapshots[-1]["orders"]:
        if order.status != "filled" or order.type == "market":
            continue
        buy = order.side == "buy"
        if order.type in ("limit", "stop_limit"):
            assert order.price_cents <= order.limit_cents if buy else order.price_cents >= order.limit_cents
        if order.type == "stop":
            assert order.price_cents >= order.stop_cents if buy else order.price_cents <= order.stop_cents
        assert order.amount_cents == order.price_cents * order.quantity


@PROPERTY_SETTINGS
@given(steps=actions)
def test_property_44_reserved_plus_available_equals_the_accounts_totals(steps) -> None:
    """Feature: trading-performance-optimization, Property 44: For any interleaving of ticks, orders, cancels and
    matcher crashes, after every step the reserved cash equals what the open buy orders hold, reserved shares equal
    what the open sell orders hold, and reserved + available equals the account's cash and shares as moved by fills."""
    run = drive(steps)
    for snapshot in run.snapshots:
        account, orders, journal = snapshot["account"], snapshot["orders"], snapshot["journal"]
        open_orders = [o for o in orders if o.status == "open"]
        assert account.reserved == sum(o.reserved_cents for o in open_orders if o.side == "buy")
        held = account.positions.get("ACME")
        assert (held.reserved if held else 0) == sum(o.quantity for o in open_orders if o.side == "sell")
        fills = [o for o in orders if o.status == "filled"]
        assert account.cash == START_CASH - sum(o.amount_cents if o.side == "buy" else -o.amount_cents for o in fills)
        shares = START_SHARES + sum(o.quantity if o.side == "buy" else -o.quantity for o in fills)
        assert (held.quantity if held else 0) == shares
        # what was written is what the engine holds: a restart loads the same account
        assert journal.accounts[account.id] == (account.cash, account.reserved, account.invoice_sequence)
        stored = journal.positions.get((account.id, "ACME"))
        written = (stored.quantity, stored.reserved) if stored else None
        assert written == ((held.quantity, held.reserved) if held else None)
    assert run.snapshots[-1]["account"].reserved == 0


@PROPERTY_SETTINGS
@given(steps=actions)
def test_property_45_buying_power_never_goes_negative(steps) -> None:
    """Feature: trading-performance-optimization, Property 45: For any interleaving of ticks, orders, cancels and
    matcher crashes, buying power (cash - reserved cash) and unreserved shares never go below zero."""
    run = drive(steps)
    for snapshot in run.snapshots:
        account = snapshot["account"]
        assert account.buying_power >= 0
        assert all(position.free >= 0 for position in account.positions.values())


@PROPERTY_SETTINGS
@given(steps=actions)
def test_ioc_and_fok_orders_never_rest(steps) -> None:
    """Feature: order-types (issue 27), ioc/fok never rest: For any interleaving of ticks, orders, cancels and
    engine crashes, an ioc or fok order is never open after the step that placed it: it filled then, at the
    price of that moment (only if that price crossed its limit, or it was a market order), or it was cancelled
    as unfilled at once, holding no cash or shares."""
    run = drive(steps)
    for before, after in zip([None, *run.snapshots], run.snapshots, strict=False):
        known = set() if before is None else {o.id for o in before["orders"]}
        for order in after["orders"]:
            if order.time_in_force not in ("ioc", "fok"):
                continue
            assert order.status != "open" and order.reserved_cents == 0, order
            if order.id not in known:  # placed in this step: decided by this step, never later
                assert order.closed_ms == order.created_ms
                assert order.status == "filled" or order.reason == f"{order.time_in_force}_unfilled"
    for order in run.snapshots[-1]["orders"]:
        if order.time_in_force in ("ioc", "fok") and order.status == "filled" and order.type == "limit":
            buy = order.side == "buy"
            assert order.price_cents <= order.limit_cents if buy else order.price_cents >= order.limit_cents
