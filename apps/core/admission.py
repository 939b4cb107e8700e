"""Admission control: each server process takes at most ADMISSION_MAX_IN_FLIGHT HTTP requests at once.

Past the bound a request is refused at once, before Django sees it, with 503 and
`Retry-After`: under overload the excess is turned away in well under a
millisecond of work instead of queueing until every request times out, and the
requests that were admitted keep their latency. The request's MongoDB deadline
(RequestMetricsMiddleware) starts inside Django, that is, once it is admitted.

An ASGI wrapper, not a Django middleware, so a refusal costs no request object,
no middleware and no thread. Health checks are never refused (a load balancer
must tell "busy" from "dead"), and WebSockets are not HTTP requests.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from apps.core.metrics import ADMISSION_REFUSED

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER_SECONDS = 1
EXEMPT_PATHS = frozenset({"/healthz", "/metrics"})
REFUSAL_BODY = json.dumps(
    {"detail": "The server is at capacity; retry shortly.", "code": "overloaded"}, separators=(",", ":")
).encode()


class AdmissionControl:
    def __init__(self, app: AsgiApp, *, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # one event loop per process: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await self._refuse(scope, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
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
