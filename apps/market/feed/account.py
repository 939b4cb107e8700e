"""The trader's own events on the feed: one reader per server process, routing to that trader's sockets.

Events are appended by the portfolio app (`apps/portfolio/events.py`) through `apps/core/account_events.py`:
numbered per trader, kept in a bounded history, published as finished frames on one Redis channel. Here,
one pub/sub subscription per process (not one per WebSocket) receives them all and hands each to the
local connections of its trader; the market hub's tick path is not involved.

Per connection, frames go out strictly in sequence: an authenticated connection first gets
`{"type":"account_ready","seq":S}` (its trader's latest number when it attached) and then every event
after S exactly once, in order. An event whose number jumps past the last one sent (a message lost with
the pub/sub connection, or a socket that fell far behind) is preceded by the missing ones from the
history. A client that reconnects sends `{"type":"account_resume","after":N}` and gets the events after
N from the history, then the live ones; when the history no longer holds N+1 it is told so first
(`{"type":"account_gap","after":N,"next":M}`: refresh from the API, then carry on from M).

Each connection's work (its ready frame, resumes, events) is a queue drained by one task while it has
work, so a slow socket delays only itself; a queue that grows past MAX_PENDING is replaced by one
catch-up from the history.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from apps.core import account_events
from apps.core.account_events import History
from apps.core.backoff import backoff_delay
from apps.core.clock import now_ms
from apps.core.metrics import ACCOUNT_FRAMES
from apps.core.redis import async_redis_client
from apps.market.feed.frames import encode, error_frame

logger = logging.getLogger(__name__)

MAX_PENDING = 256  # queued operations per connection before they collapse into one catch-up
LISTEN_TIMEOUT_SECONDS = 2.0
CLOSE_WAIT_SECONDS = 1.0

Op = tuple[Any, ...]  # ("ready",) | ("resume", after) | ("event", seq, frame) | ("catch_up",)


class AccountConnection(Protocol):
    async def send_frame(self, text: str) -> None: ...


class AccountSource(Protocol):
    """Where events come from: `start` subscribes (returns once Redis confirmed), `history` reads back."""

    async def start(self, deliver: Callable[[bytes], None], resync: Callable[[], None]) -> None: ...

    async def history(self, user_id: str, after: int) -> History: ...

    async def latest(self, user_id: str) -> int: ...


@dataclass(eq=False)
class AccountSubscriber:
    connection: AccountConnection
    user_id: str
    last_sent: int | None = None  # the last sequence number this connection was sent (None: not synced yet)
    ops: deque[Op] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    closed: bool = False


def ready_frame(seq: int) -> str:
    return encode({"type": "account_ready", "seq": seq, "timestamp": now_ms()})


def gap_frame(after: int, next_seq: int) -> str:
    message = f"events {after + 1} to {next_seq - 1} are no longer available; refresh, then continue from {next_seq}"
    if next_seq <= after + 1:
        message = f"event numbers start again at {next_seq}: refresh, then continue from there"
    return encode({"type": "account_gap", "after": after, "next": next_seq, "message": message, "timestamp": now_ms()})


def replay(history: History, after: int) -> tuple[list[str], int]:
    """The frames a connection that has everything up to `after` needs from `history`, and its new last number.

    A gap frame leads when the history cannot continue at after + 1 (trimmed or expired, or the numbers
    were reset below `after`)."""
    frames: list[str] = []
    first = history.frames[0][0] if history.frames else history.latest + 1
    if after > history.latest or (after < history.latest and first != after + 1):
        frames.append(gap_frame(after, first))
    frames += [frame for _seq, frame in history.frames]
    last = max(history.latest, history.frames[-1][0]) if history.frames else history.latest
    return frames, last


class AccountRouter:
    def __init__(self, source: AccountSource) -> None:
        self._source = source
        self._subscribers: dict[str, set[AccountSubscriber]] = {}
        self._started: asyncio.Task[None] | None = None

    # --- connections ------------------------------------------------------------------------
    async def attach(self, connection: AccountConnection, user_id: object) -> AccountSubscriber:
        """Route `user_id`'s events to `connection` from now on; its first frame is `account_ready`."""
        await self._listening()
        subscriber = AccountSubscriber(connection, str(user_id))
        self._subscribers.setdefault(subscriber.user_id, set()).add(subscriber)
        self._push(subscriber, ("ready",))
        return subscriber

    def detach(self, subscriber: AccountSubscriber) -> None:
        subscriber.closed = True
        subscriber.ops.clear()
        local = self._subscribers.get(subscriber.user_id)
        if local is not None:
            local.discard(subscriber)
            if not local:
                del self._subscribers[subscriber.user_id]

    def resume(self, subscriber: AccountSubscriber, after: int) -> None:
        """The client has every event up to `after`: send it what followed, then the live ones."""
        self._push(subscriber, ("resume", after))

    def connections_of(self, user_id: object) -> int:
        return len(self._subscribers.get(str(user_id), ()))

    # --- from the reader ----------------------------------------------------------------------
    def deliver(self, message: bytes) -> None:
        parsed = account_events.parse_message(message)
        if parsed is None:
            return
        user_id, seq, frame = parsed
        for subscriber in self._subscribers.get(user_id, ()):
            self._push(subscriber, ("event", seq, frame))

    def resync(self) -> None:
        """The subscription was re-established: messages may have been lost meanwhile, so catch up."""
        for local in self._subscribers.values():
            for subscriber in local:
                self._push(subscriber, ("catch_up",))

    # --- per connection, in order -----------------------------------------------------------------
    def _push(self, subscriber: AccountSubscriber, op: Op) -> None:
        if subscriber.closed:
            return
        if len(subscriber.ops) >= MAX_PENDING:
            ready = bool(subscriber.ops) and subscriber.ops[0][0] == "ready"
            subscriber.ops.clear()
            subscriber.ops.append(("ready",) if ready else ("catch_up",))
        subscriber.ops.append(op)
        if subscriber.task is None:
            subscriber.task = asyncio.ensure_future(self._drain(subscriber))

    async def _drain(self, subscriber: AccountSubscriber) -> None:
        try:
            while subscriber.ops and not subscriber.closed:
                op = subscriber.ops.popleft()
                for frame in await self._frames(subscriber, op):
                    await subscriber.connection.send_frame(frame)
        except Exception:  # the socket went away mid-send, or a bug: this connection only
            logger.debug("account events: a connection's queue stopped", exc_info=True)
            subscriber.ops.clear()
        finally:
            subscriber.task = None

    async def _frames(self, subscriber: AccountSubscriber, op: Op) -> list[str]:
        kind = op[0]
        if kind == "event":
            return await self._event(subscriber, op[1], op[2])
        if kind == "resume":
            return await self._resume(subscriber, op[1], explicit=True)
        if subscriber.last_sent is not None:  # a catch-up of a synced connection
            return await self._resume(subscriber, subscriber.last_sent, explicit=False)
        try:  # ready (or a catch-up before it)
            subscriber.last_sent = await self._source.latest(subscriber.user_id)
        except Exception:
            logger.warning("account events: the latest number could not be read", exc_info=True)
            return [_unavailable()]
        ACCOUNT_FRAMES.labels(kind="ready").inc()
        return [ready_frame(subscriber.last_sent)]

    async def _event(self, subscriber: AccountSubscriber, seq: int, frame: str) -> list[str]:
        last = subscriber.last_sent
        if last is not None and seq <= last:
            return []  # already sent (by a replay)
        if last is None or seq == last + 1:
            subscriber.last_sent = seq
            ACCOUNT_FRAMES.labels(kind="event").inc()
            return [frame]
        frames = await self._resume(subscriber, last, explicit=False)
        if subscriber.last_sent is not None and subscriber.last_sent >= seq:
            return frames
        subscriber.last_sent = seq  # the history could not be read: say what is missing, then go on
        return [gap_frame(last, seq), frame]

    async def _resume(self, subscriber: AccountSubscriber, after: int, *, explicit: bool) -> list[str]:
        try:
            history = await self._source.history(subscriber.user_id, after)
        except Exception:
            logger.warning("account events: the history could not be read", exc_info=True)
            return [_unavailable()] if explicit else []
        frames, last = replay(history, after)
        subscriber.last_sent = last
        ACCOUNT_FRAMES.labels(kind="replayed").inc(len(history.frames))
        return frames

    # --- the reader ----------------------------------------------------------------------------------
    async def _listening(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._source.start(self.deliver, self.resync))
        try:
            await asyncio.wait_for(asyncio.shield(self._started), LISTEN_TIMEOUT_SECONDS)
        except Exception:  # Redis is down: the connection is served, its events come once Redis is back
            logger.warning("account events: not listening yet", exc_info=True)
            if self._started.done():
                self._started = None


def _unavailable() -> str:
    message = "account events are unavailable right now; send account_resume to try again"
    return error_frame("unavailable", message, timestamp=now_ms())


class RedisAccountSource:
    """The one subscription of this process to every trader's events, on one pooled connection (Property 8)."""

    def __init__(self) -> None:
        self._client = async_redis_client()
        self._pubsub = self._client.pubsub()
        self._confirmed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, deliver: Callable[[bytes], None], resync: Callable[[], None]) -> None:
        await self._pubsub.subscribe(account_events.channel())
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read(deliver, resync))
        await self._confirmed.wait()

    async def _read(self, deliver: Callable[[bytes], None], resync: Callable[[], None]) -> None:
        failures = 0
        while True:
            try:
                # Blocking (no timeout): on Python 3.11 a read timeout expiring together with the task's
                # cancellation can swallow the cancellation, and the loop would never end.
                message = await self._pubsub.get_message(timeout=None)
            except Exception:  # a lost connection: redis-py reconnects and subscribes again on the next read
                if _cancelled():
                    raise asyncio.CancelledError from None  # redis-py turned our cancellation into an error
                logger.warning("account events: reading Redis pub/sub failed; retrying", exc_info=True)
                await asyncio.sleep(backoff_delay(failures, base=0.1, maximum=2.0))
                failures += 1
                continue
            failures = 0
            if message is None:
                continue
            if message["type"] == "message":
                deliver(message["data"])
            elif message["type"] == "subscribe":
                if self._confirmed.is_set():
                    resync()  # subscribed again after a reconnect: what was published meanwhile is in the history
                self._confirmed.set()

    async def history(self, user_id: str, after: int) -> History:
        return await account_events.history_after(self._client, user_id, after)

    async def close(self) -> None:
        """Stop reading and give the connections back (tests; a server process reads until it exits)."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait({self._reader}, timeout=CLOSE_WAIT_SECONDS)
        await self._pubsub.aclose()  # a read still blocked fails now, and the reader sees its cancellation
        if self._reader is not None:
            await asyncio.wait({self._reader}, timeout=CLOSE_WAIT_SECONDS)
        await self._client.aclose()

    async def latest(self, user_id: str) -> int:
        return int(await self._client.get(account_events.sequence_key(user_id)) or 0)


def _cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


_routers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AccountRouter] = weakref.WeakKeyDictionary()


def account_router() -> AccountRouter:
    """This process's router, in the running event loop (one per loop: pools cannot cross loops)."""
    loop = asyncio.get_running_loop()
    router = _routers.get(loop)
    if router is None:
        router = _routers[loop] = AccountRouter(RedisAccountSource())
    return router
