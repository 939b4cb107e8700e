"""The rules: each command decided against the in-memory state, in stream order. Pure: no I/O, no clock.

`decide(state, command, effects, at_ms=...)` changes `state` and records in `effects` what to write,
whom to answer and what to announce. Time is the command's own (its stream entry's milliseconds), so
the same commands on the same state decide the same way: after a crash, a replay, or in the
simulation test (tests/portfolio/test_engine_simulation.py).

Buying power (cash - reserved) and free shares (quantity - reserved) never go negative: every fill
and reservation is checked here first, and a refusal writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from apps.portfolio.engine.commands import IMMEDIATE, Adjust, Cancel, CancelAll, Close, Command, Expire, Place, Ticks
from apps.portfolio.engine.effects import Effects, InvoiceRecord, money, order_fields
from apps.portfolio.engine.ids import order_id_at
from apps.portfolio.engine.state import Account, EngineState, OrderState, Position

# (order, number) -> the invoice's verification code (apps/portfolio/invoices.py: an HMAC of its content)
Signer = Callable[[OrderState, int], str]
AVERAGE_COST_STEP = Decimal("0.0001")


class Refusal(Exception):
    def __init__(self, status: int, code: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.field, self.detail = status, code, field, detail


def decide(
    state: EngineState, command: Command, effects: Effects, *, at_ms: int, entry: str, sign: Signer, day_ms: int
) -> None:
    """Apply one command. `entry`: its stream entry id (a new order's id derives from it)."""
    effects.commands += 1
    if isinstance(command, Ticks):
        for symbol, cents in command.prices:
            on_tick(state, effects, symbol, cents, at_ms=at_ms, sign=sign)
    elif isinstance(command, Expire):
        for order in state.book.expired(command.now_ms):
            _close(state, effects, order, "expired", reason="expired", at_ms=at_ms)
    elif isinstance(command, Place):
        _place(state, effects, command, at_ms=at_ms, entry=entry, sign=sign, day_ms=day_ms)
    elif isinstance(command, Cancel):
        _cancel(state, effects, command, at_ms=at_ms)
    elif isinstance(command, CancelAll):
        _cancel_all(state, effects, command, at_ms=at_ms)
    elif isinstance(command, Close):
        _close_position(state, effects, command, at_ms=at_ms, entry=entry, sign=sign, day_ms=day_ms)
    elif isinstance(command, Adjust):
        _adjust(state, effects, command)


# --- placing -----------------------------------------------------------------------------------------


def _place(
    state: EngineState, effects: Effects, command: Place, *, at_ms: int, entry: str, sign: Signer, day_ms: int
) -> None:
    caller = command.caller
    account = state.accounts.get(caller.account_id)
    if account is None:
        effects.refuse(caller.reply_to, caller.request_id, 404, "unknown_account", "account", "no such account")
        return
    if (original := _original(state, account, command)) is not None:
        return _answer_replay(effects, command, original)
    price = state.prices.get(command.symbol)
    if price is None:
        detail = f"{command.symbol} has no price yet; try again shortly"
        return effects.refuse(caller.reply_to, caller.request_id, 409, "no_quote", "symbol", detail)
    order = OrderState(
        id=order_id_at(entry, state.shard),
        account_id=account.id,
        client_order_id=command.client_order_id,
        symbol=command.symbol,
        side=command.side,
        quantity=command.quantity,
        type=command.type,
        time_in_force=command.time_in_force,
        created_ms=at_ms,
        limit_cents=command.limit_cents,
        stop_cents=command.stop_cents,
    )
    try:
        if fills_now(order, price):
            fill_price = price
            _check_fill(account, order, fill_price)
            _accept(effects, account, order, fills_at_once=True)
            _fill(state, effects, account, order, fill_price, at_ms=at_ms, sign=sign)
        elif order.time_in_force in IMMEDIATE:  # checked as a resting order would be, then cancelled at once
            _reserve(account, order)
            _accept(effects, account, order, fills_at_once=False)
            _close(state, effects, order, "cancelled", reason=f"{order.time_in_force}_unfilled", at_ms=at_ms)
        else:
            _reserve(account, order)
            order.expires_ms = at_ms + day_ms if order.time_in_force == "day" else None
            _accept(effects, account, order, fills_at_once=False)
            state.rest(order)
    except Refusal as refused:
        effects.refuse(caller.reply_to, caller.request_id, refused.status, refused.code, refused.field, refused.detail)
        return
    effects.answer(caller.reply_to, caller.request_id, 201, order=_shown(order))


def _original(state: EngineState, account: Account, command: Place | Close) -> OrderState | None:
    order_id = account.client_orders.get(command.client_order_id)
    if order_id is None:
        return None
    original = state.order(order_id)
    assert original is not None, "the runner prefetches a repeated client_order_id's order"
    return original


def _answer_replay(effects: Effects, command: Place | Close, original: OrderState) -> None:
    caller = command.caller
    if isinstance(command, Close):  # the sell it made, if the id was used for closing this symbol
        command = Place(caller, command.client_order_id, command.symbol, "sell", original.quantity)
    asked = (
        command.symbol,
        command.side,
        command.quantity,
        command.type,
        command.limit_cents,
        command.stop_cents,
        command.time_in_force,
    )
    names = ("symbol", "side", "quantity", "type", "limit_price", "stop_price", "time_in_force")
    differing = [name for name, mine, theirs in zip(names, asked, original.terms(), strict=True) if mine != theirs]
    if differing:
        detail = (
            f"client_order_id {command.client_order_id!r} was already used for a different order "
            f"(differs in {', '.join(differing)})"
        )
        effects.refuse(caller.reply_to, caller.request_id, 409, "client_order_id_conflict", "client_order_id", detail)
        return
    effects.answer(caller.reply_to, caller.request_id, 200, order=_shown(original))


def _shown(order: OrderState) -> dict[str, object]:
    return order_fields(order)


def _accept(effects: Effects, account: Account, order: OrderState, *, fills_at_once: bool) -> None:
    """A new order: its client_order_id is taken, it is written and announced (an order filled at once is
    announced "accepted", then "filled")."""
    account.client_orders[order.client_order_id] = order.id
    effects.new_orders[order.id] = order
    effects.account_written(account, order.symbol if order.side == "sell" else None)  # a sell reserves shares
    effects.announce(account, "order_accepted", order, **({"status": "accepted"} if fills_at_once else {}))


def stop_crossed(order: OrderState, cents: int) -> bool:
    """A stop buy triggers at or above its stop price, a stop sell at or below it."""
    stop = order.stop_cents
    return stop is not None and (cents >= stop if order.side == "buy" else cents <= stop)


def limit_crossed(order: OrderState, cents: int) -> bool:
    """A limit buy fills at or below its limit price, a limit sell at or above it."""
    limit = order.limit_cents
    return limit is not None and (cents <= limit if order.side == "buy" else cents >= limit)


def fills_now(order: OrderState, cents: int) -> bool:
    """Whether a new order executes at once at `cents`; a stop limit whose stop is crossed is marked triggered."""
    if order.type in ("stop", "stop_limit"):
        if not stop_crossed(order, cents):
            return False
        order.triggered = True
        return order.type == "stop" or limit_crossed(order, cents)
    return order.type == "market" or limit_crossed(order, cents)


def reservation_cents(order: OrderState) -> int:
    """The cash a resting buy holds: its limit (a stop market order: its stop) x quantity; a sell holds shares."""
    if order.side == "sell":
        return 0
    price = order.stop_cents if order.type == "stop" else order.limit_cents
    assert price is not None
    return price * order.quantity


def _reserve(account: Account, order: OrderState) -> None:
    if order.side == "sell":
        position = account.positions.get(order.symbol)
        if position is None or position.free < order.quantity:
            raise Refusal(
                409, "insufficient_holding", "quantity", f"you do not hold {order.quantity} {order.symbol} unreserved"
            )
        position.reserved += order.quantity
        return
    needed = reservation_cents(order)
    if account.buying_power < needed:
        price = money(order.stop_cents if order.type == "stop" else order.limit_cents)
        detail = f"{order.quantity} {order.symbol} at {price} needs {money(needed)} buying power"
        raise Refusal(409, "insufficient_buying_power", "quantity", detail)
    order.reserved_cents = needed
    account.reserved += needed


def _check_fill(account: Account, order: OrderState, cents: int) -> None:
    """Refuse a fill the account cannot pay for (a resting order's own reservation counts as its own)."""
    if order.side == "buy":
        if account.buying_power + order.reserved_cents < cents * order.quantity:
            detail = f"not enough buying power for {order.quantity} {order.symbol}"
            raise Refusal(409, "insufficient_cash", "quantity", detail)
        return
    position = account.positions.get(order.symbol)
    if position is None or position.free < order.quantity:  # a resting sell released its own shares first
        detail = f"you do not hold {order.quantity} {order.symbol} unreserved"
        raise Refusal(409, "insufficient_holding", "quantity", detail)


def _fill(
    state: EngineState, effects: Effects, account: Account, order: OrderState, cents: int, *, at_ms: int, sign: Signer
) -> None:
    """Execute `order` at `cents`: cash, position, its invoice; the order ends filled."""
    amount = cents * order.quantity
    account.reserved -= order.reserved_cents
    order.reserved_cents = 0
    position = account.positions.get(order.symbol)
    if order.side == "buy":
        account.cash -= amount
        if position is None:
            position = account.positions[order.symbol] = Position(0, Decimal("0"))
        total = position.average_cost * position.quantity + Decimal(amount).scaleb(-2)
        position.quantity += order.quantity
        position.average_cost = (total / position.quantity).quantize(AVERAGE_COST_STEP, ROUND_HALF_EVEN)
    else:
        assert position is not None
        account.cash += amount
        position.quantity -= order.quantity
        if position.quantity == 0 and position.reserved == 0:
            del account.positions[order.symbol]
    order.status, order.price_cents, order.amount_cents, order.closed_ms = "filled", cents, amount, at_ms
    account.invoice_sequence += 1
    number = account.invoice_sequence
    effects.invoices.append(InvoiceRecord(order.id, account.id, number, sign(order, number), at_ms))
    effects.order_written(order)
    effects.account_written(account, order.symbol)
    state.remember(order)
    effects.announce(account, "order_filled", order)
    ready = {"id": str(order.id), "invoice_number": number, "invoice_status": "ready"}
    effects.events.append(
        (account.user_id, "invoice_ready", {**ready, "invoice_url": f"/api/v1/trades/{order.id}/invoice"})
    )


# --- ticks, cancels, expiry ----------------------------------------------------------------------------


def on_tick(state: EngineState, effects: Effects, symbol: str, cents: int, *, at_ms: int, sign: Signer) -> None:
    """A new price: fill (or trigger) every resting order it crosses, best priced first."""
    state.prices[symbol] = cents
    effects.prices[symbol] = cents
    for order in state.book.crossed(symbol, cents):
        account = state.accounts[order.account_id]
        if order.type == "stop_limit" and not order.triggered:
            order.triggered = True  # from now on a limit order
            effects.order_written(order)
            if not limit_crossed(order, cents):
                state.book.add(order)
                continue
        price = cents if order.type == "stop" else order.limit_cents
        assert price is not None
        _release(account, order)
        try:
            _check_fill(account, order, price)
        except Refusal as refused:  # a stop buy whose price gapped past the buying power
            _hold(account, order)
            _close(state, effects, order, "cancelled", reason=refused.code, at_ms=at_ms)
            continue
        state.open_orders.pop(order.id, None)
        _fill(state, effects, account, order, price, at_ms=at_ms, sign=sign)


def _release(account: Account, order: OrderState) -> None:
    """A resting sell gives its shares back before its own fill is checked (a buy's cash counts in _check_fill)."""
    if order.side == "sell":
        account.positions[order.symbol].reserved -= order.quantity


def _hold(account: Account, order: OrderState) -> None:
    if order.side == "sell":
        account.positions[order.symbol].reserved += order.quantity


def _close(state: EngineState, effects: Effects, order: OrderState, status: str, *, reason: str, at_ms: int) -> None:
    """Cancel or expire a resting order: its reservation goes back, the order ends `status`."""
    account = state.accounts[order.account_id]
    account.reserved -= order.reserved_cents
    order.reserved_cents = 0
    if order.side == "sell":
        position = account.positions[order.symbol]
        position.reserved -= order.quantity
        if position.quantity == 0 and position.reserved == 0:
            del account.positions[order.symbol]
    order.status, order.reason, order.closed_ms = status, reason, at_ms
    state.unrest(order)
    effects.order_written(order)
    effects.account_written(account, order.symbol if order.side == "sell" else None)
    effects.announce(account, f"order_{status}", order)


def _cancel(state: EngineState, effects: Effects, command: Cancel, *, at_ms: int) -> None:
    caller = command.caller
    order = state.open_orders.get(command.order_id)
    if order is None or order.account_id != caller.account_id:
        known = state.order(command.order_id)
        if known is not None and known.account_id == caller.account_id:
            return effects.answer(caller.reply_to, caller.request_id, 200, order=_shown(known))
        return effects.refuse(caller.reply_to, caller.request_id, 404, "not_open", "order_id", "no open order")
    _close(state, effects, order, "cancelled", reason="cancelled", at_ms=at_ms)
    effects.answer(caller.reply_to, caller.request_id, 200, order=_shown(order))


def _cancel_all(state: EngineState, effects: Effects, command: CancelAll, *, at_ms: int) -> None:
    caller = command.caller
    cancelled = [
        o
        for o in state.open_orders.values()
        if o.account_id == caller.account_id and command.symbol in (None, o.symbol)
    ]
    for order in cancelled:
        _close(state, effects, order, "cancelled", reason="cancelled", at_ms=at_ms)
    effects.answer(caller.reply_to, caller.request_id, 200, orders=[_shown(o) for o in cancelled])


def _close_position(
    state: EngineState, effects: Effects, command: Close, *, at_ms: int, entry: str, sign: Signer, day_ms: int
) -> None:
    """A market sell of the position (all, `quantity`, or `percent` rounded down), checked whole before anything
    changes: a refusal cancels nothing."""
    caller, account = command.caller, state.accounts.get(command.caller.account_id)
    if account is not None and (original := _original(state, account, command)) is not None:
        return _answer_replay(effects, command, original)
    position = account.positions.get(command.symbol) if account is not None else None
    if account is None or position is None or position.quantity == 0:
        return effects.refuse(caller.reply_to, caller.request_id, 404, "no_position", "symbol", "no such position")
    free = position.quantity if command.cancel_orders else position.free
    quantity = command.quantity or position.quantity * (command.percent or 100) // 100
    if quantity < 1:
        detail = f"{command.percent} % of {position.quantity} {command.symbol} is less than one share"
        return effects.refuse(caller.reply_to, caller.request_id, 422, "invalid_percent", "percent", detail)
    if command.symbol not in state.prices:
        detail = f"{command.symbol} has no price yet; try again shortly"
        return effects.refuse(caller.reply_to, caller.request_id, 409, "no_quote", "symbol", detail)
    if quantity > free:
        detail = f"{free} {command.symbol} can be sold now"
        if position.reserved and not command.cancel_orders:
            detail += f" ({position.reserved} are reserved by resting sells: pass cancel_orders)"
        return effects.refuse(caller.reply_to, caller.request_id, 409, "insufficient_holding", "quantity", detail)
    if command.cancel_orders:
        resting = [o for o in state.open_orders.values() if o.account_id == account.id and o.symbol == command.symbol]
        for order in resting:
            _close(state, effects, order, "cancelled", reason="position_closed", at_ms=at_ms)
    sell = Place(caller, command.client_order_id, command.symbol, "sell", quantity)
    _place(state, effects, sell, at_ms=at_ms, entry=entry, sign=sign, day_ms=day_ms)


def _adjust(state: EngineState, effects: Effects, command: Adjust) -> None:
    """An operator's change, refused whole when it would take cash or shares below what orders reserve."""
    caller = command.caller
    account = state.accounts.get(caller.account_id)
    if account is None:
        return effects.refuse(caller.reply_to, caller.request_id, 404, "unknown_account", "account", "no such account")
    if account.cash + command.cash_cents < account.reserved:
        detail = f"cash would fall below the {money(account.reserved)} resting orders reserve"
        return effects.refuse(caller.reply_to, caller.request_id, 409, "below_reserved", "cash", detail)
    changes = []
    for change in command.positions:
        held = account.positions.get(change.symbol)
        if held is not None and change.quantity < held.reserved:
            detail = f"{change.symbol}: {held.reserved} shares are reserved by resting orders"
            return effects.refuse(caller.reply_to, caller.request_id, 409, "below_reserved", "quantity", detail)
        try:
            cost = Decimal(change.average_cost).quantize(AVERAGE_COST_STEP)
        except InvalidOperation:
            cost = None
        if cost is None or not cost.is_finite() or cost < 0:
            detail = "average_cost: a non-negative amount"
            return effects.refuse(
                caller.reply_to, caller.request_id, 422, "invalid_average_cost", "average_cost", detail
            )
        changes.append((change, held, cost))
    account.cash += command.cash_cents
    for change, held, cost in changes:
        if change.quantity == 0 and (held is None or held.reserved == 0):
            account.positions.pop(change.symbol, None)
        elif held is None:
            account.positions[change.symbol] = Position(change.quantity, cost)
        else:
            held.quantity, held.average_cost = change.quantity, cost
        effects.positions.add((account.id, change.symbol))
    effects.account_written(account)
    effects.answer(caller.reply_to, caller.request_id, 200, cash=money(account.cash))
