"""The task base every job uses, and dead letters.

- `ReliableTask`: late acknowledgement (a worker crash redelivers), retries
  with exponential backoff and jitter (Property 30, `backoff_delay`), and after
  the last attempt a DeadLetter record instead of a silent loss.
- `dead_letters_replay(...)`: send dead letters again (admin action and
  `manage.py replay_dead_letters`).

Trading itself sends no job: the order engine signs each confirmation in its batch and the PDF is made
on first download (ADR 0008).
"""

import logging
import random
from collections.abc import Iterable
from typing import Any

from celery import Task, current_app
from django.utils import timezone

from apps.core import backoff

logger = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 300.0
# Each delay is shortened by up to this fraction at random: retries of many
# jobs that failed together spread out, and every delay still exceeds the one
# before it (0.75 * 2 > 1) until the cap.
BACKOFF_JITTER = 0.25


def backoff_delay(
    retries: int,
    *,
    base: float = BACKOFF_BASE_SECONDS,
    maximum: float = BACKOFF_MAX_SECONDS,
    jitter: float = BACKOFF_JITTER,
    rng: random.Random | None = None,
) -> float:
    """A task's retry delay: the one backoff (apps/core/backoff.py) with the task policy's defaults."""
    return backoff.backoff_delay(retries, base=base, maximum=maximum, jitter=jitter, rng=rng)


class ReliableTask(Task):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = (Exception,)
    max_retries = 5
    retry_backoff = False  # Celery's own full jitter may wait 0 s; `retry` below uses backoff_delay
    backoff_base = BACKOFF_BASE_SECONDS
    backoff_max = BACKOFF_MAX_SECONDS

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        if countdown is None and eta is None:
            countdown = backoff_delay(self.request.retries, base=self.backoff_base, maximum=self.backoff_max)
        return super().retry(
            args=args,
            kwargs=kwargs,
            exc=exc,
            throw=throw,
            eta=eta,
            countdown=countdown,
            max_retries=max_retries,
            **options,
        )

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        from apps.core.metrics import DEAD_LETTERS
        from apps.core.models import DeadLetter

        logger.error("job %s failed for good after %s attempts: %s", self.name, self.request.retries + 1, exc)
        DeadLetter.objects.update_or_create(
            task_id=task_id,
            defaults={
                "task_name": self.name,
                "args": list(args or []),
                "kwargs": dict(kwargs or {}),
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "traceback": str(einfo)[:20000],
                "attempts": self.request.retries + 1,
            },
        )
        DEAD_LETTERS.labels(task=self.name).inc()


def registered_tasks() -> dict[str, Task]:
    """Every task of the app by name (importing each app's tasks module, as a worker does at start).

    `current_app` is the project's Celery app (trading/celery.py, loaded with Django): core names no project module."""
    app = current_app
    app.loader.import_default_modules()
    return dict(app.tasks)


def dead_letters_replay(letters: Iterable[Any]) -> int:
    """Send each dead letter's task again with its arguments; mark it replayed. Returns how many were sent."""
    tasks = registered_tasks()
    sent = 0
    for letter in letters:
        task = tasks.get(letter.task_name)
        if task is None:
            logger.warning("dead letter %s: task %s is not registered; left as is", letter.pk, letter.task_name)
            continue
        task.apply_async(args=list(letter.args), kwargs=dict(letter.kwargs))
        letter.replayed_at = timezone.now()
        letter.save(update_fields=["replayed_at"])
        sent += 1
    return sent


def dead_letters_pending() -> int:
    """Dead letters not yet replayed (the operator page's figure)."""
    from apps.core.models import DeadLetter

    return DeadLetter.objects.filter(replayed_at__isnull=True).count()
