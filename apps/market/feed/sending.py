"""How the hub gets frames onto each connection's socket without a slow reader holding up the rest.

Two ways, per connection. Where the server is uvicorn's sansio protocol (the
Procfile's), frames shared by many connections are encoded once as WebSocket
bytes and written straight to the transport, only while its buffer is empty
(`feed/wire.py`): no await, no task, and a client that has not taken its last
frames yet is skipped and later gets the newest prices instead of a queue.
Anywhere else a send goes through ASGI: started eagerly (the coroutine runs until
it first waits, what Python 3.12's eager tasks do); only a send that must wait
becomes a task, and the connection is skipped while it is in flight.

Either way a socket that takes nothing for `stall_seconds` (WS_SEND_STALL_SECONDS)
is no reader at all: the hub forgets it and closes it (code 4408; a browser
reconnects and resubscribes).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from apps.core.metrics import WS_STALLED_CLOSED
from apps.market.feed.frames import notice_frame
from apps.market.feed.wire import DirectSocket

logger = logging.getLogger(__name__)


class FeedConnection(Protocol):
    """What the hub needs from a WebSocket: send one text frame (a coroutine: the hub drives it eagerly);
    close it when it stopped reading. A connection may also offer `direct_socket()` (feed/wire.py)."""

    async def send_frame(self, text: str) -> None: ...

    async def close_stalled(self) -> None: ...


class Readiness(enum.Enum):
    READY = "ready"
    BUSY = "busy"  # its last frames are still in flight: keep its pending symbols for a later pass
    GONE = "gone"  # closing, closed, or just closed as stalled: nothing more to send


@dataclass(eq=False)
class Watcher:
    connection: FeedConnection
    direct: DirectSocket | None = None
    symbols: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)  # subscribed symbols changed since the last frame
    sending: bool = False  # an ASGI send is in flight
    blocked_since: float | None = None  # direct: when its buffer was last seen non-empty without progress
    blocked_bytes: int = 0
    stalled: bool = False  # closed as stalled: skipped until its consumer is gone
    conflated: int = 0  # its updates replaced by newer ones before they could be sent, since its last frames
    told: bool = False  # the current episode of conflation was announced with a notice frame


def new_watcher(connection: FeedConnection) -> Watcher:
    offer = getattr(connection, "direct_socket", None)
    direct = offer() if callable(offer) else None
    return Watcher(connection, direct if isinstance(direct, DirectSocket) else None)


def with_notice(watcher: Watcher, frames: list[str], timestamp: int) -> list[str]:
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


class Sender:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        stall_seconds: float,
        forget: Callable[[FeedConnection], Coroutine[Any, Any, None]],
        tasks: set[asyncio.Task[Any]],
    ) -> None:
        self._clock = clock
        self.stall_seconds = stall_seconds
        self._forget = forget
        self._tasks = tasks  # the hub's: cancelled when it closes

    def readiness(self, watcher: Watcher) -> Readiness:
        direct = watcher.direct
        if direct is None:
            return Readiness.BUSY if watcher.sending else Readiness.READY
        buffered = direct.buffered()
        if buffered is None or watcher.stalled:
            return Readiness.GONE  # its consumer detaches it
        if not buffered:
            watcher.blocked_since = None
            return Readiness.READY
        now = self._clock()
        if watcher.blocked_since is None or buffered < watcher.blocked_bytes:  # new, or it took something
            watcher.blocked_since = now
        watcher.blocked_bytes = buffered
        if now - watcher.blocked_since < self.stall_seconds:
            return Readiness.BUSY
        watcher.stalled = True
        self._spawn(self._close_stalled(watcher))
        return Readiness.GONE

    def send(self, watcher: Watcher, frames: list[str], wire: Callable[[], bytes]) -> None:
        """Write `frames` (`wire()`: the same, encoded) now; an ASGI send that must wait finishes in a task,
        the connection skipped by later passes meanwhile."""
        if watcher.direct is not None:
            watcher.direct.write(wire())
            return
        connection = watcher.connection
        # one frame (the usual case): the connection's own coroutine, no wrapper around it
        sending = connection.send_frame(frames[0]) if len(frames) == 1 else _send_frames(connection, frames)
        try:
            awaiting = sending.send(None)
        except StopIteration:
            return
        except Exception:  # the connection is closing; its consumer detaches it
            logger.debug("feed send failed", exc_info=True)
            return
        watcher.sending = True
        self._spawn(self._finish_send(watcher, sending, awaiting))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_send(self, watcher: Watcher, sending: Coroutine[Any, Any, None], awaiting: Any) -> None:
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

    async def _close_stalled(self, watcher: Watcher) -> None:
        """A socket that took no frame for `stall_seconds`: forget it (its subscriptions go now), then close it."""
        WS_STALLED_CLOSED.inc()
        logger.info("feed: a connection took no frame for %.0f s; closing it", self.stall_seconds)
        await self._forget(watcher.connection)
        try:
            await watcher.connection.close_stalled()
        except Exception:  # already closing or closed: nothing more to do
            logger.debug("feed: closing a stalled connection failed", exc_info=True)


async def _send_frames(connection: FeedConnection, frames: list[str]) -> None:
    for frame in frames:
        await connection.send_frame(frame)
