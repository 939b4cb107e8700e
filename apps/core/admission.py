"""Admission control: each server process refuses work it cannot serve in time, before Django sees it.

Two bounds, either of which refuses a request at once with 503 and `Retry-After`:
- ADMISSION_MAX_IN_FLIGHT requests at once (requests waiting on a thread or the database);
- ADMISSION_MAX_LAG_MS of event-loop lag, sustained. The hot reads run on the loop itself
  and finish without yielding, so under overload few are ever "in flight": the queue is
  the loop's own backlog. A probe asks to wake every LAG_PROBE_SECONDS and notes how late
  it woke; while LAG_STREAK probes in a row woke later than the bound, new requests are
  refused. One slow callback (a cold first request, a collection) makes one late probe,
  not an overload: the next probe is on time again.
A request that only waits on another process (an order awaiting the engine's answer, a future on the loop:
no thread, no CPU) steps aside while it waits (`parked()`): its slot serves another request, so a burst of
orders is not refused for the requests it holds, and the in-flight bound stays one of work. At most
ADMISSION_MAX_PARKED wait so at once; past it a waiting request keeps its slot. When every slot is taken
but the loop keeps up, a new request waits up to ADMISSION_MAX_WAIT_MS for one to be handed over (a burst),
then is refused.
Under overload the excess is turned away in well under a millisecond of work instead of
queueing until every request times out, and the requests that were admitted keep their
latency. The request's MongoDB deadline (RequestMetricsMiddleware) starts inside Django,
that is, once it is admitted.

An ASGI wrapper, not a Django middleware, so a refusal costs no request object,
no middleware and no thread. Health checks are never refused (a load balancer
must tell "busy" from "dead"), and WebSockets are not HTTP requests.
"""

import asyncio
import contextlib
import contextvars
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from apps.core.metrics import ADMISSION_REFUSED

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER_SECONDS = 1
LAG_PROBE_SECONDS = 0.005
LAG_STREAK = 3  # late probes in a row that make an overload
EXEMPT_PATHS = frozenset({"/healthz", "/metrics"})
REFUSAL_BODY = json.dumps(
    {"detail": "The server is at capacity; retry shortly.", "code": "overloaded"}, separators=(",", ":")
).encode()


class LoopLag:
    """Whether this process' event loop has been running callbacks later than `bound` seconds, for a while.

    A chain of `call_later` callbacks, not a task: nothing is left pending when a loop
    closes (tests run each request on a loop of its own). Started on first use per loop.
    """

    def __init__(self, *, bound: float, interval: float = LAG_PROBE_SECONDS) -> None:
        self.bound = bound
        self.interval = interval
        self.seconds = 0.0  # how late the last probe woke
        self.streak = 0  # probes in a row that woke later than the bound
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def overloaded(self) -> bool:
        return self.streak >= LAG_STREAK

    def ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self.seconds, self.streak = loop, 0.0, 0
            loop.call_later(self.interval, self._probe, loop, loop.time() + self.interval)

    def _probe(self, loop: asyncio.AbstractEventLoop, expected: float) -> None:
        now = loop.time()
        self.seconds = now - expected
        self.streak = self.streak + 1 if self.seconds > self.bound else 0
        if loop is self._loop:
            loop.call_later(self.interval, self._probe, loop, now + self.interval)


_admitted_by: contextvars.ContextVar["AdmissionControl | None"] = contextvars.ContextVar("admitted_by", default=None)


@contextmanager
def parked() -> Iterator[None]:
    """While the block waits on another process, the request's slot serves another request (see above)."""
    control = _admitted_by.get()
    if control is None or control.parked >= control.max_parked:
        yield
        return
    control.release()
    control.parked += 1
    try:
        yield
    finally:
        control.parked -= 1
        control.in_flight += 1


class AdmissionControl:
    def __init__(
        self,
        app: AsgiApp,
        *,
        max_in_flight: int,
        max_lag_ms: float = 0,
        max_parked: int = 0,
        max_wait_ms: float = 0,
        lag: LoopLag | None = None,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_lag = max_lag_ms / 1000  # 0: no lag bound
        self.max_parked = max_parked
        self.max_wait = max_wait_ms / 1000  # 0: refuse at once when full
        self.lag = lag or LoopLag(bound=self.max_lag)
        self.in_flight = 0  # one event loop per process: no lock needed
        self.parked = 0  # admitted requests waiting on another process, not counted in in_flight
        self._waiting: deque[asyncio.Future[bool]] = deque()  # for a slot, first come first served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.max_lag:
            self.lag.ensure_running()
        if (self.max_lag and self.lag.overloaded) or not await self._slot():
            await self._refuse(scope, send)
            return
        token = _admitted_by.set(self)
        try:
            await self.app(scope, receive, send)
        finally:
            _admitted_by.reset(token)
            self.release()

    async def _slot(self) -> bool:
        """Take a slot: free now, or handed over within max_wait by a request that ends or parks. A burst the
        loop keeps up with (orders arriving at once, which park as soon as they are sent) waits a few
        milliseconds instead of being refused; a lagging loop refused the request before it got here."""
        if self.in_flight < self.max_in_flight and not self._waiting:
            self.in_flight += 1
            return True
        if not self.max_wait or len(self._waiting) >= self.max_in_flight:
            return False
        loop = asyncio.get_running_loop()
        handed: asyncio.Future[bool] = loop.create_future()  # True: a slot handed over; False: max_wait passed
        self._waiting.append(handed)
        timer = loop.call_later(self.max_wait, _expire, handed)
        taken = False
        try:
            taken = await handed  # in_flight already counts this request when True
        except asyncio.CancelledError:  # the client went away while it waited
            if handed.done() and not handed.cancelled() and handed.result():
                self.release()  # a slot was handed over just then: pass it on, or it is lost for good
            raise
        finally:
            timer.cancel()
            if not taken:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(handed)
        return taken

    def release(self) -> None:
        """Give a slot back: to the longest waiting request, else to the pool."""
        while self._waiting:
            handed = self._waiting.popleft()
            if not handed.done():
                handed.set_result(True)
                return
        self.in_flight -= 1

    @staticmethod
    async def _refuse(scope: Scope, send: Send) -> None:
        ADMISSION_REFUSED.inc()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(REFUSAL_BODY)).encode()),
                    (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": REFUSAL_BODY})


def _expire(handed: asyncio.Future[bool]) -> None:
    if not handed.done():
        handed.set_result(False)
