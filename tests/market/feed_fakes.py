"""In-memory stand-ins for the feed's edges: a recording socket, a source without Redis, a synchronous driver."""

from __future__ import annotations

import asyncio
import json
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


class RecordingConnection:
    def __init__(self) -> None:
        self.frames: list[str] = []

    async def send_frame(self, text: str) -> None:
        self.frames.append(text)

    def decoded(self) -> list[dict[str, Any]]:
        return [json.loads(frame) for frame in self.frames]

    def updates(self) -> list[dict[str, Any]]:
        return [update for frame in self.decoded() for update in frame["updates"]]


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
