"""Dependency checks for /healthz. Each answers within a bounded time or counts as down."""

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from celery import current_app as celery_app
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from apps.core.redis import redis_client


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    milliseconds: float


def check_mongodb() -> str:
    connection.ensure_connection()
    connection.connection.admin.command("ping", maxTimeMS=int(settings.HEALTH_TIMEOUT_SECONDS * 1000))
    return "ping ok"


def check_redis() -> str:
    redis_client().ping()
    return "ping ok"


def check_celery() -> str:
    replies = celery_app.control.ping(timeout=settings.HEALTH_TIMEOUT_SECONDS * 0.8, limit=1)
    if not replies:
        raise RuntimeError("no worker answered")
    return f"{len(replies)} worker(s) answered"


async def check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel()
    marker = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.ping", "marker": marker})
    message = await layer.receive(channel)
    if message.get("marker") != marker:
        raise RuntimeError("round trip returned the wrong message")
    return "round trip ok"


async def _run(name: str, check: Callable[[], object]) -> CheckResult:
    started = time.perf_counter()
    try:
        if asyncio.iscoroutinefunction(check):
            detail = await asyncio.wait_for(check(), settings.HEALTH_TIMEOUT_SECONDS)
        else:
            detail = await asyncio.wait_for(asyncio.to_thread(check), settings.HEALTH_TIMEOUT_SECONDS)
        ok = True
    except TimeoutError:
        ok, detail = False, f"no answer within {settings.HEALTH_TIMEOUT_SECONDS} s"
    except Exception as error:  # any failure of a dependency is a health result, not a 500
        ok, detail = False, f"{type(error).__name__}: {error}"[:300]
    return CheckResult(name, ok, str(detail), round((time.perf_counter() - started) * 1000, 1))


CHECKS: dict[str, Callable[[], object]] = {
    "mongodb": check_mongodb,
    "redis": check_redis,
    "celery": check_celery,
    "channel_layer": check_channel_layer,
}


async def run_checks() -> list[CheckResult]:
    """Run every check concurrently; the whole takes at most HEALTH_TIMEOUT_SECONDS."""
    return list(await asyncio.gather(*(_run(name, check) for name, check in CHECKS.items())))


class RecentHealth:
    """The last check results, reused for HEALTH_CACHE_SECONDS.

    /healthz is public: without this every request fanned out to MongoDB, Redis, a
    Celery broadcast and a channel-layer round trip. One refresh at a time per
    process: requests arriving while one runs get the previous results (the view
    runs on the server's event loop, so plain attributes are enough).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.clear()

    def clear(self) -> None:
        self._results: list[CheckResult] | None = None
        self._checked_at = 0.0
        self._refreshing = False

    async def results(self) -> list[CheckResult]:
        fresh = self._results is not None and self.clock() - self._checked_at < settings.HEALTH_CACHE_SECONDS
        if self._results is not None and (fresh or self._refreshing):
            return self._results
        self._refreshing = True
        try:
            self._results = await run_checks()
            self._checked_at = self.clock()
        finally:
            self._refreshing = False
        return self._results


recent_health = RecentHealth()
