"""In-memory stand-ins for the feed's edges: a recording socket, a source without Redis, a synchronous driver."""

from __future__ import annotations

import asyncio
import json
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (the fakes below never do) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("the coroutine waited; use asyncio.run")


class _InstantSelector(selectors.DefaultSelector):
    """Never waits: a select that would wait moves the loop's virtual clock forward by its timeout instead."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout:
            self.loop.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a fake clock: timers fire in order at once, `loop.time()` says when they were due.

    asyncio.sleep, call_at and the hub's own send loop all run on it unchanged, so a test drives the real
    100 ms schedule without waiting for it and without depending on how busy the machine is."""

    def __init__(self) -> None:
        selector = _InstantSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = 0.0

    def time(self) -> float:
        return self.now


def run_virtual(coroutine: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


class RecordingConnection:
    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closed_stalled = False

    async def send_frame(self, text: str) -> None:
        self.frames.append(text)

    async def close_stalled(self) -> None:
        self.closed_stalled = True

    def decoded(self) -> list[dict[str, Any]]:
        return [json.loads(frame) for frame in self.frames]

    def updates(self) -> list[dict[str, Any]]:
        return [update for frame in self.decoded() if frame["type"] == "stock_updates" for update in frame["updates"]]


class TimedConnection(RecordingConnection):
    """Records when (on the running loop's clock) each frame was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_at: list[float] = []

    async def send_frame(self, text: str) -> None:
        self.frames.append(text)
        self.sent_at.append(asyncio.get_running_loop().time())


class BlockedConnection(RecordingConnection):
    """A reader that stops reading: every send waits until `release()`."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def send_frame(self, text: str) -> None:
        await self.gate.wait()
        self.frames.append(text)

    def release(self) -> None:
        self.gate.set()


class FakeSource:
    def __init__(self) -> None:
        self.subscribed: set[str] = set()
        self.subscribe_calls: list[list[str]] = []
        self.unsubscribe_calls: list[list[str]] = []

    async def subscribe(self, symbols: list[str]) -> None:
        self.subscribe_calls.append(symbols)
        self.subscribed |= set(symbols)

    async def unsubscribe(self, symbols: list[str]) -> None:
        self.unsubscribe_calls.append(symbols)
        self.subscribed -= set(symbols)

    async def run(self, deliver: Callable[[str, str], None]) -> None:
        await asyncio.Event().wait()


def encoded_update(symbol: str, price: float, timestamp: int = 1_700_000_000_000) -> str:
    from apps.market.ticks import Tick

    tick = Tick(symbol=symbol, price=price, previous_close=100.0, volume=1000, timestamp=timestamp)
    return json.dumps(tick.as_update(), separators=(",", ":"))
