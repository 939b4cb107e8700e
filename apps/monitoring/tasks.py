"""Beat tasks of the monitoring app (schedules in settings.CELERY_BEAT_SCHEDULE).

Plain tasks, not ReliableTask: a sample or an evaluation that fails is simply
superseded by the next one a few seconds later; retrying it, or filing it as a
dead letter (which would itself raise an alert), would only add noise.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

from celery import shared_task

from apps.core.redis import key, redis_client
from apps.monitoring.recorder import sample_record, samples_prune
from apps.monitoring.services import alerts_evaluate

logger = logging.getLogger(__name__)
T = TypeVar("T")


@contextmanager
def single_run(name: str, seconds: int) -> Iterator[bool]:
    """True when this process holds the named lock (or Redis cannot say: running twice beats not running)."""
    lock = key("monitoring", "lock", name)
    try:
        acquired = bool(redis_client().set(lock, "1", nx=True, ex=seconds))
    except Exception as error:  # Redis down: proceed without the lock
        logger.warning("monitoring lock %s unavailable (%s); running anyway", name, error)
        yield True
        return
    try:
        yield acquired
    finally:
        if acquired:
            with suppress(Exception):  # Redis gone meanwhile: the lock expires by itself
                redis_client().delete(lock)


def _once(name: str, seconds: int, action: Callable[[], T]) -> T | None:
    with single_run(name, seconds) as acquired:
        return action() if acquired else None


@shared_task(name="monitoring.record_sample", ignore_result=True)
def record_sample() -> None:
    _once("record", 30, sample_record)


@shared_task(name="monitoring.evaluate_alerts", ignore_result=True)
def evaluate_alerts() -> None:
    _once("alerts", 60, alerts_evaluate)


@shared_task(name="monitoring.prune_samples", ignore_result=True)
def prune_samples() -> None:
    _once("prune", 3600, samples_prune)
