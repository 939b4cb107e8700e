"""Which Django request handler serves an HTTP request, behind admission control.

- Bearer-token requests to /api/ go through `settings.API_MIDDLEWARE` (a lean
  stack: no session, CSRF, messages or static-file work, one metrics layer);
- everything else (pages, admin, the browser's session-authenticated API calls)
  goes through the full `settings.MIDDLEWARE`;
- a lean request borrows its thread for sync work from a pool (`ThreadLending`) instead of making one;
- with BENCH_BASELINE_ENDPOINT on, /bench/baseline is a bare async django-ninja
  endpoint with no middleware: the floor bench/api_load.py measures against.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

from apps.core.admission import AdmissionControl, AsgiApp, Receive, Scope, Send

API_PREFIX = "/api/"
BASELINE_PATH = "/bench/baseline"


@contextmanager
def _middleware(names: list[str]) -> Iterator[None]:
    """Django builds a handler's chain from settings.MIDDLEWARE: lend it another list while it does (start-up)."""
    saved = settings.MIDDLEWARE
    settings.MIDDLEWARE = names
    try:
        yield
    finally:
        settings.MIDDLEWARE = saved


class _HandlerWith(ASGIHandler):
    def __init__(self, middleware: list[str]) -> None:
        self._names = middleware
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        with _middleware(self._names):
            super().load_middleware(is_async)


class ThreadLending(_HandlerWith):
    """A handler whose requests borrow their one thread for sync work (Django's request signals, a cache miss'
    read) from a pool, instead of each making a thread of its own.

    Django's ASGIHandler serves every request in a new ThreadSensitiveContext, and asgiref gives each such
    context a new single-thread executor: a thread started and joined per request, since every request
    sends its request_started and request_finished signals through sync_to_async. That was about a quarter
    of a web process' CPU on the lean API stack. asgiref lets the caller own a context's executor (not
    shut down on exit, reusable), so a request still has one thread to itself while it runs, as Django
    means, and the thread serves a later request after. The pool keeps at most `max_idle` executors (a burst
    of orders awaiting the engine may hold many at once; the rest end with it); only the event loop
    touches it."""

    def __init__(self, middleware: list[str], *, max_idle: int = 64) -> None:
        super().__init__(middleware)
        self.max_idle = max_idle
        self._idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(1, thread_name_prefix="request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            if len(self._idle) < self.max_idle:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)


def _sends_bearer(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return bool(value[:7].lower() == b"bearer ")
    return False


class RequestRouter:
    def __init__(self, full: AsgiApp) -> None:
        self.full = full
        self.lean = ThreadLending(list(settings.API_MIDDLEWARE))
        self.baseline = _HandlerWith([]) if settings.BENCH_BASELINE_ENDPOINT else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if path.startswith(API_PREFIX) and _sends_bearer(scope):
            await self.lean(scope, receive, send)
        elif self.baseline is not None and path == BASELINE_PATH:
            await self.baseline(scope, receive, send)
        else:
            await self.full(scope, receive, send)


def http_application(full: AsgiApp) -> AsgiApp:
    return AdmissionControl(
        RequestRouter(full),
        max_in_flight=settings.ADMISSION_MAX_IN_FLIGHT,
        max_lag_ms=settings.ADMISSION_MAX_LAG_MS,
        max_parked=settings.ADMISSION_MAX_PARKED,
        max_wait_ms=settings.ADMISSION_MAX_WAIT_MS,
    )
