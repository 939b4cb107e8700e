"""Tasks only the test worker loads (`celery_worker_process` passes `--include tests.worker_tasks`)."""

from __future__ import annotations

import json
import time

from apps.core.jobs import ReliableTask
from apps.core.redis import key, redis_client
from trading.celery import app

ATTEMPTS_KEY = "test-attempts"


@app.task(base=ReliableTask, name="tests.fails_every_time", max_retries=3, backoff_base=0.5)
def fails_every_time(run: str) -> None:
    """Fail every attempt, noting when it started, when it failed and when the broker was told to run it."""
    request = fails_every_time.request
    started = time.time()
    eta = request.eta  # ISO time the retry was scheduled for (None on the first delivery)
    note = {"retries": request.retries, "started": started, "eta": eta}
    try:
        raise RuntimeError(f"attempt {request.retries} of {run} failed")
    finally:
        note["failed_at"] = time.time()
        redis_client().rpush(key(ATTEMPTS_KEY, run), json.dumps(note))
