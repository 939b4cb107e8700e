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

A slow client (`feed/sending.py`): while its previous frames are still in
flight it is skipped, and its pending state is the set of its symbols that
changed since (at most its subscriptions), so it later gets the newest prices,
never a queue, and it is told: the first frames it gets after some of its
updates were replaced (or dropped by memory shedding) start with a `notice`
frame (code `updates_conflated`), once per such episode. A client whose socket
takes nothing for `stall_seconds` (WS_SEND_STALL_SECONDS) is forgotten and
closed (code 4408). When a pass takes too long for its window the window widens
(conflating harder) and the WS_BATCH_WINDOW gauge says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.core.clock import now_ms
from apps.core.metrics import WS_BATCH_WINDOW, WS_BYTES, WS_CONFLATED, WS_FRAMES, WS_SUBSCRIPTIONS
from apps.core.pressure import register_shedder
from apps.market.feed.frames import update_frames
from apps.market.feed.sending import FeedConnection, Readiness, Sender, Watcher, new_watcher, with_notice
from apps.market.feed.source import RedisSymbolSource, SymbolSource
from apps.market.feed.wire import encode_frames

__all__ = ["FeedConnection", "MarketHub", "RedisSymbolSource", "SubscriptionUnavailable", "market_hub"]

logger = logging.getLogger(__name__)

BASE_WINDOW_SECONDS = 0.1
MAX_WINDOW_SECONDS = 1.0
# Of the window: a pass longer than this leaves too little of it for reading ticks and client messages;
# narrowing waits until the pass would still fit the narrower window comfortably (no flapping).
WIDEN_WHEN_PASS_EXCEEDS = 0.6
NARROW_WHEN_PASS_BELOW = 0.3
WINDOW_STEP = 1.5
SEND_STALL_SECONDS = 10.0


class SubscriptionUnavailable(Exception):
    """Redis did not take a subscription; the caller's request changed nothing."""


def next_window(window: float, pass_seconds: float) -> float:
    """The batch window after a send pass that took `pass_seconds`: wider under overload, back to 100 ms after."""
    if pass_seconds > window * WIDEN_WHEN_PASS_EXCEEDS:
        return min(MAX_WINDOW_SECONDS, window * WINDOW_STEP)
    if pass_seconds < window * NARROW_WHEN_PASS_BELOW:
        return max(BASE_WINDOW_SECONDS, window / WINDOW_STEP)
    return window


@dataclass
class PassStats:
    connections: int = 0
    frames: int = 0
    bytes: int = 0
    skipped_busy: int = 0


class _Encoded:
    """One distinct set of updates of a pass: its frames, their size, and (on first need) their wire bytes."""

    __slots__ = ("_wire", "frames", "size")

    def __init__(self, frames: list[str]) -> None:
        self.frames = frames
        self.size = sum(map(len, frames))
        self._wire: bytes | None = None

    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = encode_frames(self.frames)
        return self._wire


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
        self._watchers: dict[FeedConnection, Watcher] = {}
        self._interest: dict[str, set[Watcher]] = {}  # symbol -> connections wanting it
        self._latest: dict[str, str] = {}  # symbol -> its latest update, encoded by the publisher
        self._changed: set[str] = set()  # symbols updated in the current window
        self._backlog: set[Watcher] = set()  # connections whose updates wait for a send to finish
        self._conflated = 0
        self._batch_id = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sender = Sender(clock=clock, stall_seconds=stall_seconds, forget=self.detach, tasks=self._tasks)
        self.window = BASE_WINDOW_SECONDS

    @property
    def stall_seconds(self) -> float:
        return self._sender.stall_seconds

    # --- connections and their symbols -----------------------------------------------
    def attach(self, connection: FeedConnection) -> None:
        self._watchers.setdefault(connection, new_watcher(connection))

    def symbols_of(self, connection: FeedConnection) -> frozenset[str]:
        watcher = self._watchers.get(connection)
        return frozenset(watcher.symbols) if watcher else frozenset()

    async def watch(self, connection: FeedConnection, symbols: Iterable[str]) -> None:
        """Start sending `symbols` to `connection`; the first interest in a symbol subscribes it in Redis.

        If Redis refuses the subscription nothing is kept (SubscriptionUnavailable): no half-applied state."""
        watcher = self._watchers.get(connection) or self._watchers.setdefault(connection, new_watcher(connection))
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
        """One send pass: every connection with changed symbols gets its frames, unless its last ones are still
        in flight (then it keeps them pending, each symbol's latest update only, for a later pass)."""
        stats = PassStats()
        due = self._due()
        if not due:
            return stats
        self._batch_id += 1
        timestamp = now_ms()
        encoded: dict[tuple[str, ...], _Encoded] = {}  # one per distinct set of updates
        readiness, ready = self._sender.readiness, Readiness.READY
        for watcher in due:
            if not watcher.dirty:
                continue
            state = readiness(watcher)
            if state is not ready:
                if state is Readiness.BUSY:
                    self._backlog.add(watcher)
                    stats.skipped_busy += 1
                else:
                    watcher.dirty.clear()  # closing: its consumer detaches it
                continue
            symbols = tuple(sorted(watcher.dirty))
            watcher.dirty = set()
            shared = encoded.get(symbols)
            if shared is None:
                latest = self._latest
                shared = encoded[symbols] = _Encoded(
                    update_frames([latest[s] for s in symbols], timestamp=timestamp, batch_id=self._batch_id)
                )
            frames = with_notice(watcher, shared.frames, timestamp)
            stats.connections += 1
            stats.frames += len(frames)
            if frames is shared.frames:
                stats.bytes += shared.size
                self._sender.send(watcher, frames, shared.wire)
            else:
                stats.bytes += sum(map(len, frames))
                self._sender.send(watcher, frames, lambda frames=frames: encode_frames(frames))  # type: ignore[misc]
        WS_FRAMES.inc(stats.frames)
        WS_BYTES.inc(stats.bytes)
        if self._conflated:
            WS_CONFLATED.inc(self._conflated)
            self._conflated = 0
        return stats

    def _due(self) -> set[Watcher]:
        """The connections to visit this pass: those with symbols changed in the window, and the backlog."""
        changed, self._changed = self._changed, set()
        due, self._backlog = self._backlog, set()
        for symbol in changed:
            for watcher in self._interest.get(symbol, ()):
                if symbol in watcher.dirty:
                    self._conflated += 1  # a slow connection's older, unsent update is replaced
                    watcher.conflated += 1
                else:
                    watcher.dirty.add(symbol)
                due.add(watcher)
        return due

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
