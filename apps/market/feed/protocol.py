"""The market feed's contract: a pydantic model for every client message and every server frame,
and the per-connection rate limit.

Every way a client message can be wrong maps to a `FeedError` whose code and message
the consumer sends back as `{"type":"error",...}`; the connection stays open.
Server frames are packed as strings for speed (frames.py: a tick is serialised once,
however many connections receive it); tests/market/test_feed_contract.py checks every
packed frame against the models here, and docs/feed-schema.json is their JSON Schema
(`feed_json_schema()`; the same test keeps the file current). The browser (static/src/ws.js)
reads the same names: `stock_updates`, `updates`, `error`, and the trader's own `account` frames
(apps/market/feed/account.py).
"""

import json
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, TypeAdapter, ValidationError

MAX_MESSAGE_CHARS = 16_384  # 200 tickers of 10 characters fit many times over
MAX_SYMBOLS_PER_CONNECTION = 200
MESSAGES_PER_SECOND = 10
# Sustained abuse: this many refused messages within ABUSE_WINDOW_SECONDS closes the socket with 1008.
ABUSE_STRIKES = 30
ABUSE_WINDOW_SECONDS = 10.0
MAX_SEQUENCE = 2**53 - 1  # what a browser's numbers hold exactly
AccountEventName = Literal["order_accepted", "order_filled", "order_cancelled", "order_expired", "invoice_ready"]

Ticker = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=1, max_length=10)]


class FeedError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subscribe(_Message):
    type: Literal["subscribe"]
    symbols: list[Ticker] = Field(max_length=MAX_SYMBOLS_PER_CONNECTION)


class Unsubscribe(_Message):
    type: Literal["unsubscribe"]
    symbols: list[Ticker] | None = Field(default=None, max_length=MAX_SYMBOLS_PER_CONNECTION)  # None: all


class Ping(_Message):
    type: Literal["ping"]


class AccountResume(_Message):
    """A signed-in client's last account event: the server sends every event after it, then the live ones."""

    type: Literal["account_resume"]
    after: StrictInt = Field(ge=0, le=MAX_SEQUENCE, description="The last `seq` the client received (0: none)")


ClientMessage = Subscribe | Unsubscribe | Ping | AccountResume
_MESSAGE_TYPES: dict[str, type[_Message]] = {
    "subscribe": Subscribe,
    "unsubscribe": Unsubscribe,
    "ping": Ping,
    "account_resume": AccountResume,
}


# --- Server frames ------------------------------------------------------------------------


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StockUpdate(_Frame):
    """One symbol's new quote (the source document's StockUpdate; `apps.market.ticks.Tick.as_update`)."""

    symbol: str
    price: float
    change: float
    change_percent: float
    volume: int
    timestamp: int = Field(description="Tick time, epoch milliseconds")


class StockUpdates(_Frame):
    """A batch of updates for the connection's symbols; a batch split over frames keeps one batchId."""

    type: Literal["stock_updates"]
    updates: list[StockUpdate]
    timestamp: int = Field(description="Server time, epoch milliseconds")
    batchId: int


class Subscriptions(_Frame):
    """The acknowledgement of a subscribe, unsubscribe or ping: the connection's subscriptions now."""

    type: Literal["subscribed", "unsubscribed", "pong"]
    symbols: list[str]
    timestamp: int


class ErrorFrame(_Frame):
    """A refused message or a failure on the server's side; the connection stays open."""

    type: Literal["error"]
    code: str
    message: str
    timestamp: int


class AccountReady(_Frame):
    """First frame of a signed-in connection: its trader's latest event number; events after it follow."""

    type: Literal["account_ready"]
    seq: int = Field(ge=0)
    timestamp: int


class AccountEvent(_Frame):
    """One of the trader's own events, numbered per trader from 1 without gaps; the payload follows the
    envelope (the order's fields, `cash` and `buying_power` when known)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    type: Literal["account"]
    seq: int = Field(ge=1)
    event: AccountEventName
    timestamp: int


class AccountGap(_Frame):
    """Events after `after` up to `next` - 1 can no longer be sent (the bounded history moved on, or the
    numbers started again): refresh from the API, then continue from `next`."""

    type: Literal["account_gap"]
    after: int
    next: int
    message: str
    timestamp: int


ServerFrame = StockUpdates | Subscriptions | ErrorFrame | AccountReady | AccountEvent | AccountGap


def feed_json_schema() -> dict[str, Any]:
    """The JSON Schema of every client message and server frame (docs/feed-schema.json)."""
    return {
        "title": "Market feed (WebSocket /ws/market/)",
        "client_message": TypeAdapter(ClientMessage).json_schema(),
        "server_frame": TypeAdapter(ServerFrame).json_schema(),
    }


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "message"
    if first["type"] == "too_long" and first["loc"] == ("symbols",):
        return f"symbols: at most {MAX_SYMBOLS_PER_CONNECTION} per connection"
    return f"{field}: {first['msg']}"


def parse_client_message(text: str | None) -> ClientMessage:
    """The validated message in `text`, or FeedError naming what is wrong."""
    if text is None:
        raise FeedError("malformed_json", "send JSON text frames, not binary")
    if len(text) > MAX_MESSAGE_CHARS:
        raise FeedError("message_too_large", f"a message is at most {MAX_MESSAGE_CHARS} characters")
    try:
        data = json.loads(text)
    except ValueError as error:
        raise FeedError("malformed_json", f"not valid JSON: {error}") from error
    except RecursionError as error:  # "[[[[...": not a ValueError, and it must not end the connection
        raise FeedError("malformed_json", "not valid JSON: nested too deeply") from error
    if not isinstance(data, dict):
        raise FeedError("invalid_message", "a message is a JSON object with a 'type'")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _MESSAGE_TYPES:
        raise FeedError("unknown_type", f"type: expected one of {', '.join(_MESSAGE_TYPES)}, got {kind!r}")
    try:
        message = cast(ClientMessage, _MESSAGE_TYPES[kind].model_validate(data))
    except RecursionError as error:
        raise FeedError("invalid_message", "message: nested too deeply") from error
    except ValidationError as error:
        code = "too_many_symbols" if any(e["type"] == "too_long" for e in error.errors()) else "invalid_message"
        raise FeedError(code, _describe(error)) from error
    return message


class MessageRateLimiter:
    """At most MESSAGES_PER_SECOND client messages in any second; counts refusals to spot sustained abuse."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._accepted: deque[float] = deque(maxlen=MESSAGES_PER_SECOND)
        self._strikes: deque[float] = deque(maxlen=ABUSE_STRIKES)

    def allow(self) -> bool:
        now = self._clock()
        if len(self._accepted) == MESSAGES_PER_SECOND and now - self._accepted[0] < 1.0:
            self._strikes.append(now)
            return False
        self._accepted.append(now)
        return True

    @property
    def abusive(self) -> bool:
        """True once ABUSE_STRIKES messages were refused within ABUSE_WINDOW_SECONDS."""
        return len(self._strikes) == ABUSE_STRIKES and self._clock() - self._strikes[0] <= ABUSE_WINDOW_SECONDS
