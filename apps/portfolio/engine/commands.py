"""The engine's commands: what the stream carries (apps/core/order_stream.py), parsed and checked.

The web validated an order already (apps/portfolio/api.py, with errors naming the field); the engine
checks again what it relies on, so a malformed entry (another writer, an old version) is answered with
an error and skipped, never a crash: `parse` raises `BadCommand`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

QUANTITY_MAX = 1_000_000
PRICE_MAX_CENTS = 100_000_000  # 1 000 000.00
SIDES = ("buy", "sell")
TYPES = ("market", "limit", "stop", "stop_limit")
TIMES_IN_FORCE = ("day", "gtc", "ioc", "fok")
IMMEDIATE = ("ioc", "fok")  # never rest: what cannot fill when placed is cancelled
CASH_ADJUST_MAX_CENTS = 10**15


class BadCommand(ValueError):
    """A stream entry the engine cannot act on; the message names the field."""


@dataclass(frozen=True)
class Caller:
    """Who waits for the answer: the account, its user (events, cache keys), a request id, a reply channel."""

    account_id: ObjectId
    user_id: ObjectId
    request_id: str
    reply_to: str


@dataclass(frozen=True)
class Place:
    caller: Caller
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    type: str = "market"
    limit_cents: int | None = None
    stop_cents: int | None = None
    time_in_force: str = "day"


@dataclass(frozen=True)
class Cancel:
    caller: Caller
    order_id: ObjectId


@dataclass(frozen=True)
class PositionChange:
    symbol: str
    quantity: int
    average_cost: str  # a decimal, 4 places at most


@dataclass(frozen=True)
class Adjust:
    """An operator's change: cash by a signed amount, and positions set to a quantity and average cost."""

    caller: Caller
    cash_cents: int = 0
    positions: tuple[PositionChange, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class CancelAll:
    """Cancel every open order of the account (of one symbol, when given), in one commit."""

    caller: Caller
    symbol: str | None = None


@dataclass(frozen=True)
class Close:
    """Sell a position at market, decided against the engine's holdings: all of it, `quantity` shares or
    `percent` of it (rounded down), after cancelling the symbol's open orders when `cancel_orders`."""

    caller: Caller
    client_order_id: str
    symbol: str
    quantity: int | None = None
    percent: int | None = None  # 1 to 100
    cancel_orders: bool = False


@dataclass(frozen=True)
class Ticks:
    prices: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Expire:
    now_ms: int


Command = Place | Cancel | CancelAll | Close | Adjust | Ticks | Expire
Requested = Place | Cancel | CancelAll | Close | Adjust  # a caller waits for its answer


def _object_id(value: object, name: str) -> ObjectId:
    try:
        return ObjectId(str(value))
    except (InvalidId, TypeError):
        raise BadCommand(f"{name}: not an id") from None


def _int(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadCommand(f"{name}: a whole number from {low} to {high}")
    return value


def _text(value: object, name: str, *, choices: tuple[str, ...] | None = None, longest: int = 48) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= longest or (choices and value not in choices):
        raise BadCommand(f"{name}: expected {' or '.join(choices) if choices else f'1 to {longest} characters'}")
    return value


def _price(value: object, name: str) -> int | None:
    return None if value is None else _int(value, name, 1, PRICE_MAX_CENTS)


def _caller(raw: dict[str, Any]) -> Caller:
    return Caller(
        account_id=_object_id(raw.get("a"), "account"),
        user_id=_object_id(raw.get("u"), "user"),
        request_id=_text(raw.get("r", "-"), "request_id", longest=64),
        reply_to=_text(raw.get("to", "-"), "reply_to", longest=200),
    )


def _place(raw: dict[str, Any]) -> Place:
    order = raw.get("o")
    if not isinstance(order, dict):
        raise BadCommand("order: missing")
    return Place(
        caller=_caller(raw),
        client_order_id=_text(order.get("client_order_id"), "client_order_id"),
        symbol=_text(order.get("symbol"), "symbol", longest=10),
        side=_text(order.get("side"), "side", choices=SIDES),
        quantity=_int(order.get("quantity"), "quantity", 1, QUANTITY_MAX),
        type=_text(order.get("type", "market"), "type", choices=TYPES),
        limit_cents=_price(order.get("limit_cents"), "limit_price"),
        stop_cents=_price(order.get("stop_cents"), "stop_price"),
        time_in_force=_text(order.get("time_in_force", "day"), "time_in_force", choices=TIMES_IN_FORCE),
    )


def _close(raw: dict[str, Any]) -> Close:
    quantity, percent = raw.get("quantity"), raw.get("percent")
    if quantity is not None and percent is not None:
        raise BadCommand("quantity: give quantity or percent, not both")
    return Close(
        caller=_caller(raw),
        client_order_id=_text(raw.get("client_order_id"), "client_order_id"),
        symbol=_text(raw.get("symbol"), "symbol", longest=10),
        quantity=None if quantity is None else _int(quantity, "quantity", 1, QUANTITY_MAX),
        percent=None if percent is None else _int(percent, "percent", 1, 100),
        cancel_orders=raw.get("cancel_orders") is True,
    )


def _adjust(raw: dict[str, Any]) -> Adjust:
    positions = raw.get("positions", [])
    if not isinstance(positions, list):
        raise BadCommand("positions: expected a list")
    changes = []
    for item in positions:
        if not isinstance(item, dict):
            raise BadCommand("positions: expected objects")
        changes.append(
            PositionChange(
                symbol=_text(item.get("symbol"), "symbol", longest=10),
                quantity=_int(item.get("quantity"), "quantity", 0, QUANTITY_MAX * 1000),
                average_cost=_text(item.get("average_cost", "0"), "average_cost", longest=24),
            )
        )
    cash = _int(raw.get("cash", 0), "cash", -CASH_ADJUST_MAX_CENTS, CASH_ADJUST_MAX_CENTS)
    return Adjust(caller=_caller(raw), cash_cents=cash, positions=tuple(changes), note=str(raw.get("note", ""))[:200])


def _ticks(raw: dict[str, Any]) -> Ticks:
    pairs = raw.get("p")
    if not isinstance(pairs, list):
        raise BadCommand("prices: expected a list")
    prices = []
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2:
            raise BadCommand("prices: expected [symbol, cents] pairs")
        prices.append((_text(pair[0], "symbol", longest=10), _int(pair[1], "price", 1, PRICE_MAX_CENTS)))
    return Ticks(tuple(prices))


def parse(raw: dict[str, Any]) -> Command:
    kind = raw.get("k")
    if kind == "place":
        return _place(raw)
    if kind == "cancel":
        return Cancel(caller=_caller(raw), order_id=_object_id(raw.get("id"), "order_id"))
    if kind == "cancel_all":
        symbol = raw.get("symbol")
        return CancelAll(caller=_caller(raw), symbol=None if symbol is None else _text(symbol, "symbol", longest=10))
    if kind == "close":
        return _close(raw)
    if kind == "adjust":
        return _adjust(raw)
    if kind == "ticks":
        return _ticks(raw)
    if kind == "expire":
        return Expire(now_ms=_int(raw.get("now"), "now", 0, 2**53))
    raise BadCommand(f"kind: unknown command {kind!r}")


def caller_of(raw: dict[str, Any]) -> Caller | None:
    """Whoever waits on a command that could not be parsed, when that much can be read (to answer them)."""
    try:
        return _caller(raw)
    except BadCommand:
        return None


def as_fields(command: Requested) -> dict[str, Any]:
    """The stream form of a command (the inverse of `parse`)."""
    caller = command.caller
    head = {"a": str(caller.account_id), "u": str(caller.user_id), "r": caller.request_id, "to": caller.reply_to}
    if isinstance(command, Place):
        order = {
            "client_order_id": command.client_order_id,
            "symbol": command.symbol,
            "side": command.side,
            "quantity": command.quantity,
            "type": command.type,
            "limit_cents": command.limit_cents,
            "stop_cents": command.stop_cents,
            "time_in_force": command.time_in_force,
        }
        return {"k": "place", **head, "o": order}
    if isinstance(command, Cancel):
        return {"k": "cancel", **head, "id": str(command.order_id)}
    if isinstance(command, CancelAll):
        return {"k": "cancel_all", **head, "symbol": command.symbol}
    if isinstance(command, Close):
        close: dict[str, Any] = {"client_order_id": command.client_order_id, "symbol": command.symbol}
        close |= {"quantity": command.quantity, "percent": command.percent, "cancel_orders": command.cancel_orders}
        return {"k": "close", **head, **close}
    positions = [
        {"symbol": p.symbol, "quantity": p.quantity, "average_cost": p.average_cost} for p in command.positions
    ]
    return {"k": "adjust", **head, "cash": command.cash_cents, "positions": positions, "note": command.note}
