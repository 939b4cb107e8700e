"""The market hub: one per server process, between Redis pub/sub and every WebSocket of that process.

Why a hub (DESIGN.md, data flow 2): delivering each tick to each consumer
through the channel layer collapses a Python process at a few hundred
clients. Here a tick costs one dictionary write, whatever the number of
clients. The hub holds one Redis subscription per symbol that some local
connection wants (Property 5), keeps the latest update per symbol, and one
loop, every window (100 ms), sends each connection a `stock_updates` frame
with the latest update of each of its symbols that changed (Property 6),
split at 1 024 bytes (Property 23). Frames are encoded once per distinct set
of updates and shared by every connection that needs that set.

A slow client: while its previous send is still in flight it is skipped, and
its pending state is the set of its symbols that changed since (at most its
subscriptions), so it later gets the newest prices, never a queue, and it is
told: the first frames it gets after some of its updates were replaced (or
dropped by memory shedding) start with a `notice` frame (code
`updates_conflated`), once per such episode. What one costs is bounded: one
pass's frames in flight (the server's write buffer holds 64 KiB before a send
waits). A client whose socket takes nothing for `stall_seconds`
(WS_SEND_STALL_SECONDS) is no reader at all: the hub forgets it and closes it
(code 4408; a browser reconnects and resubscribes), instead of holding its
subscriptions until the server's keepalive gives up (~40 s). When a pass takes
too long for its window the window widens (conflating harder) and the
WS_BATCH_WINDOW gauge says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from apps.core.clock import now_ms
from apps.core.metrics import (
    WS_BATCH_WINDOW,
    WS_BYTES,
    WS_CONFLATED,
    WS_FRAMES,
    WS_STALLED_CLOSED,
    WS_SUBSCRIPTIONS,
)
from apps.core.pressure import register_shedder
from apps.core.redis import async_redis_client
from apps.market.feed.frames import notice_frame, update_frames
from apps.market.feed.publish import SymbolChannel

logger = logging.getLogger(__name__)

BASE_WINDOW_SECONDS = 0.1
MAX_WINDOW_SECONDS = 1.0
# Of the window: a pass longer than this leaves too little of it for reading ticks and client messages;
# narrowing waits until the pass would still fit the narrower window comfortably (no flapping).
WIDEN_WHEN_PASS_EXCEEDS = 0.6
NARROW_WHEN_PASS_BELOW = 0.3
WINDOW_STEP = 1.5
REDIS_RETRY_SECONDS = 1.0
SEND_STALL_SECONDS = 10.0


class SubscriptionUnavailable(Exception):
    """Redis did not take a subscription; the caller's request changed nothing."""


class FeedConnection(Protocol):
    """What the hub needs from a WebSocket: send one text frame (a coroutine: the hub drives it eagerly);
    close it when it stopped reading."""

    async def send_frame(self, text: str) -> None: ...

    async def close_stalled(self) -> None: ...


class SymbolSource(Protocol):
    """Where updates come from: subscribe and unsubscribe symbols; `run` delivers updates until cancelled."""

    async def subscribe(self, symbols: list[str]) -> None: ...

    async def unsubscribe(self, symbols: list[str]) -> None: ...

    async def run(self, deliver: Callable[[str, str], None]) -> None: ...


def next_window(window: float, pass_seconds: float) -> float:
    """The batch window after a send pass that took `pass_seconds`: wider under overload, back to 100 ms after."""
    if pass_seconds > window * WIDEN_WHEN_PASS_EXCEEDS:
        return min(MAX_WINDOW_SECONDS, window * WINDOW_STEP)
    if pass_seconds < window * NARROW_WHEN_PASS_BELOW:
        return max(BASE_WINDOW_SECONDS, window / WINDOW_STEP)
    return window


@dataclass(eq=False)
class _Watcher:
    connection: FeedConnection
    symbols: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)  # subscribed symbols changed since the last frame
    sending: bool = False
    conflated: int = 0  # its updates replaced by newer ones before they could be sent, since its last frames
    told: bool = False  # the current episode of conflation was announced with a notice frame


@dataclass
class PassStats:
    connections: int = 0
    frames: int = 0
    bytes: int = 0
    skipped_busy: int = 0


class MarketHub:
    def __init__(
        self,
        source: SymbolSource,
        *,
        clock: Callable[[], float] = time.monotonic,
        stall_seconds: float = SEND_STALL_SECONDS,
    ) -> None:
        self._source = source
        self._clock = clock
        self.stall_seconds = stall_seconds
        self._watchers: dict[FeedConnection, _Watcher] = {}
        self._interest: dict[str, set[_Watcher]] = {}  # symbol -> connections wanting it
        self._latest: dict[str, str] = {}  # symbol -> its latest update, encoded by the publisher
        self._changed: set[str] = set()  # symbols updated in the current window
        self._backlog: set[_Watcher] = set()  # connections whose updates wait for a send to finish
        self._conflated = 0
        self._batch_id = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.window = BASE_WINDOW_SECONDS

    # --- connections and their symbols -----------------------------------------------
    def attach(self, connection: FeedConnection) -> None:
        self._watchers.setdefault(connection, _Watcher(connection))

    def symbols_of(self, connection: FeedConnection) -> frozenset[str]:
        watcher = self._watchers.get(connection)
        return frozenset(watcher.symbols) if watcher else frozenset()

    async def watch(self, connection: FeedConnection, symbols: Iterable[str]) -> None:
        """Start sending `symbols` to `connection`; the first interest in a symbol subscribes it in Redis.

        If Redis refuses the subscription nothing is kept (SubscriptionUnavailable): no half-applied state."""
        watcher = self._watchers.setdefault(connection, _Watcher(connection))
        added = [s for s in dict.fromkeys(symbols) if s not in watcher.symbols]
        first_interest = [s for s in added if not self._interest.get(s)]
        for symbol in added:
            watcher.symbols.add(symbol)
            self._interest.setdefault(symbol, set()).add(watcher)
        WS_SUBSCRIPTIONS.inc(len(added))
        if first_interest:
            try:
                await self._source.subscribe(first_interest)
            except Exception as error:
                logger.warning("feed: could not subscribe %d symbols", len(first_interest), exc_info=True)
                await self.unwatch(connection, added)
                raise SubscriptionUnavailable from error

    async def unwatch(self, connection: FeedConnection, symbols: Iterable[str] | None = None) -> None:
        """Stop sending `symbols` (None: all) to `connection`; the last interest unsubscribes in Redis."""
        watcher = self._watchers.get(connection)
        if watcher is None:
            return
        removed = list(watcher.symbols) if symbols is None else [s for s in set(symbols) if s in watcher.symbols]
        last_interest = []
        for symbol in removed:
            watcher.symbols.discard(symbol)
            watcher.dirty.discard(symbol)
            wanting = self._interest.get(symbol)
            if wanting is not None:
                wanting.discard(watcher)
                if not wanting:
                    del self._interest[symbol]
                    self._latest.pop(symbol, None)
                    self._changed.discard(symbol)
                    last_interest.append(symbol)
        WS_SUBSCRIPTIONS.dec(len(removed))
        if last_interest:
            try:
                await self._source.unsubscribe(last_interest)
            except Exception:  # updates that still arrive for them are ignored (no interest)
                logger.warning("feed: could not unsubscribe %d symbols", len(last_interest), exc_info=True)

    async def detach(self, connection: FeedConnection) -> None:
        await self.unwatch(connection)
        watcher = self._watchers.pop(connection, None)
        if watcher is not None:
            self._backlog.discard(watcher)

    @property
    def subscribed_symbols(self) -> frozenset[str]:
        return frozenset(self._interest)

    # --- updates in, frames out ---------------------------------------------------------
    def deliver(self, symbol: str, update: str) -> None:
        """Keep `update` as the latest of `symbol` (conflation: a newer one in the window replaces it)."""
        if symbol not in self._interest:
            return  # a message still in flight after the last unsubscribe
        if symbol in self._changed:
            self._conflated += 1
        else:
            self._changed.add(symbol)
        self._latest[symbol] = update

    def flush(self) -> PassStats:
        """One send pass: every connection with changed symbols gets its frames, unless its last send is in flight."""
        stats = PassStats()
        changed, self._changed = self._changed, set()
        due = self._backlog
        self._backlog = set()
        for symbol in changed:
            for watcher in self._interest.get(symbol, ()):
                if symbol in watcher.dirty:
                    self._conflated += 1  # a slow connection's older, unsent update is replaced
                    watcher.conflated += 1
                else:
                    watcher.dirty.add(symbol)
                due.add(watcher)
        if not due:
            return stats
        self._batch_id += 1
        timestamp = now_ms()
        encoded: dict[tuple[str, ...], tuple[list[str], int]] = {}  # symbols -> frames, their bytes
        for watcher in due:
            if watcher.sending:
                self._backlog.add(watcher)
                stats.skipped_busy += 1
                continue
            if not watcher.dirty:
                continue
            symbols = tuple(sorted(watcher.dirty))
            watcher.dirty = set()
            shared = encoded.get(symbols)
            if shared is None:
                frames = update_frames([self._latest[s] for s in symbols], timestamp=timestamp, batch_id=self._batch_id)
                shared = encoded[symbols] = (frames, sum(map(len, frames)))
            frames = self._with_notice(watcher, shared[0], timestamp)
            stats.connections += 1
            stats.frames += len(frames)
            stats.bytes += shared[1] if frames is shared[0] else sum(map(len, frames))
            self._send(watcher, frames)
        WS_FRAMES.inc(stats.frames)
        WS_BYTES.inc(stats.bytes)
        if self._conflated:
            WS_CONFLATED.inc(self._conflated)
            self._conflated = 0
        return stats

    @staticmethod
    def _with_notice(watcher: _Watcher, frames: list[str], timestamp: int) -> list[str]:
        """The frames, led by a notice when this connection's updates started being conflated (once an episode)."""
        conflated, watcher.conflated = watcher.conflated, 0
        if not conflated:
            watcher.told = False  # it kept up: the next episode is announced again
            return frames
        if watcher.told:
            return frames
        watcher.told = True
        message = (
            f"your connection is behind the feed: {conflated} update(s) were replaced by newer prices; "
            "you receive the latest price of each symbol"
        )
        return [notice_frame("updates_conflated", message, timestamp=timestamp), *frames]

    def _send(self, watcher: _Watcher, frames: list[str]) -> None:
        """Send now if the socket takes the frames at once (the usual case); else finish in a task, skipping
        the connection in later passes meanwhile. What Python 3.12's eager tasks do, without a task per send."""
        connection = watcher.connection
        # one frame (the usual case): the connection's own coroutine, no wrapper around it
        sending = connection.send_frame(frames[0]) if len(frames) == 1 else self._send_frames(connection, frames)
        try:
            awaiting = sending.send(None)
        except StopIteration:
            return
        except Exception:  # the connection is closing; its consumer detaches it
            logger.debug("feed send failed", exc_info=True)
            return
        watcher.sending = True
        task = asyncio.ensure_future(self._finish_send(watcher, sending, awaiting))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _send_frames(connection: FeedConnection, frames: list[str]) -> None:
        for frame in frames:
            await connection.send_frame(frame)

    async def _finish_send(self, watcher: _Watcher, sending: Coroutine[Any, Any, None], awaiting: Any) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stall_seconds
        try:
            while True:
                if awaiting is None:
                    await asyncio.sleep(0)  # a bare yield: the coroutine asked to be rescheduled
                else:
                    # The coroutine's own `await future` marked the future as blocking; a task clears that
                    # flag before waiting on it, and so must we (else: "await wasn't used with future").
                    awaiting._asyncio_future_blocking = False
                    # done or failed: the coroutine sees which when resumed
                    done, _ = await asyncio.wait([awaiting], timeout=max(0.0, deadline - loop.time()))
                    if not done:
                        sending.close()  # its frames are in the server's buffer; only the wait is abandoned
                        await self._close_stalled(watcher)
                        return
                try:
                    awaiting = sending.send(None)
                except StopIteration:
                    return
        except asyncio.CancelledError:
            sending.close()
            raise
        except Exception:
            logger.debug("feed send failed", exc_info=True)
        finally:
            watcher.sending = False

    async def _close_stalled(self, watcher: _Watcher) -> None:
        """A socket that took no frame for `stall_seconds`: forget it (its subscriptions go now), then close it."""
        WS_STALLED_CLOSED.inc()
        logger.info("feed: a connection took no frame for %.0f s; closing it", self.stall_seconds)
        await self.detach(watcher.connection)
        try:
            await watcher.connection.close_stalled()
        except Exception:  # already closing or closed: nothing more to do
            logger.debug("feed: closing a stalled connection failed", exc_info=True)

    def shed(self) -> int:
        """Memory pressure: slow connections drop their pending updates (each symbol's next tick brings its
        price back); returns how many pending updates were dropped. Runs on the hub's event loop."""
        slow = [watcher for watcher in self._watchers.values() if watcher.sending or watcher in self._backlog]
        dropped = sum(len(watcher.dirty) for watcher in slow)
        for watcher in slow:
            watcher.conflated += len(watcher.dirty)  # told with its next frames
            watcher.dirty.clear()
        self._backlog.clear()
        return dropped

    def pending_updates(self) -> int:
        return sum(len(watcher.dirty) for watcher in self._watchers.values())

    # --- the loop ---------------------------------------------------------------------------
    def start(self) -> None:
        """Run the send loop and the source in the running event loop."""
        for work in (self._run(), self._source.run(self.deliver)):
            task = asyncio.ensure_future(work)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        WS_BATCH_WINDOW.set(self.window)

    async def _run(self) -> None:
        next_pass = self._clock() + self.window
        while True:
            await asyncio.sleep(max(0.0, next_pass - self._clock()))
            started = self._clock()
            try:
                self.flush()
            except Exception:
                logger.exception("feed send pass failed")
            window = next_window(self.window, self._clock() - started)
            if window != self.window:
                self.window = window
                WS_BATCH_WINDOW.set(window)
                logger.info("feed batch window now %.0f ms", window * 1000)
            next_pass = max(next_pass + self.window, self._clock())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class RedisSymbolSource:
    """Updates from the Redis pub/sub channels `stage_publish` publishes on: one subscription per symbol,
    all on one connection of the process's bounded pool (Property 8)."""

    def __init__(self) -> None:
        self._client = async_redis_client()
        self._pubsub = self._client.pubsub()
        self._prefix = SymbolChannel.name("")
        self._subscribed = asyncio.Event()
        # One command at a time: concurrent first commands would each take a pool connection for the one
        # pub/sub connection (and exhaust the pool), and a subscribe must not overtake an earlier unsubscribe.
        self._commands = asyncio.Lock()

    async def subscribe(self, symbols: list[str]) -> None:
        async with self._commands:
            await self._pubsub.subscribe(*(SymbolChannel.name(s) for s in symbols))
        self._subscribed.set()

    async def unsubscribe(self, symbols: list[str]) -> None:
        async with self._commands:
            await self._pubsub.unsubscribe(*(SymbolChannel.name(s) for s in symbols))

    async def run(self, deliver: Callable[[str, str], None]) -> None:
        prefix_length = len(self._prefix)
        try:
            while True:
                await self._subscribed.wait()
                try:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except Exception:  # a lost connection, or anything else: the feed must outlive it
                    # redis-py reconnects and resubscribes every channel on the next read
                    logger.warning("feed: reading Redis pub/sub failed; retrying", exc_info=True)
                    await asyncio.sleep(REDIS_RETRY_SECONDS)
                    continue
                if message is not None and message["type"] == "message":
                    deliver(message["channel"].decode()[prefix_length:], message["data"].decode())
        finally:
            await self._pubsub.aclose()
            await self._client.aclose()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MarketHub] = weakref.WeakKeyDictionary()


def market_hub() -> MarketHub:
    """This process's hub, started on first use in the running event loop (one per loop: pools cannot cross)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = MarketHub(RedisSymbolSource(), stall_seconds=settings.WS_SEND_STALL_SECONDS)
        hub.start()
        _hubs[loop] = hub
        register_shedder("feed_backlog", lambda: _shed_on_loop(loop, hub))
    return hub


def _shed_on_loop(loop: asyncio.AbstractEventLoop, hub: MarketHub) -> int:
    """Called from the process sampler's thread: the hub is the event loop's, so shed there."""
    pending = hub.pending_updates()
    loop.call_soon_threadsafe(hub.shed)
    return pending
