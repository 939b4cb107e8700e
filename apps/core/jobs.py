"""The one way to enqueue background work, and the task base every job uses.

- `enqueue_on_commit(task, ...)`: send the task only after the surrounding
  MongoDB transaction commits (never a job for a rolled-back write).
- `ReliableTask`: late acknowledgement (a worker crash redelivers), retries
  with exponential backoff and jitter (Property 30), and after the last
  attempt a DeadLetter record instead of a silent loss.
"""

import logging
from typing import Any

from celery import Task
from django.utils.module_loading import import_string
from django_mongodb_backend import transaction

logger = logging.getLogger(__name__)


class ReliableTask(Task):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = (Exception,)
    max_retries = 5
    retry_backoff = 2  # seconds; doubles each attempt
    retry_backoff_max = 300
    retry_jitter = True

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        from apps.core.models import DeadLetter
        from apps.monitoring.metrics import DEAD_LETTERS

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


def enqueue_on_commit(task: Task | str, *args: Any, **kwargs: Any) -> None:
    """Send `task` (or its dotted path) after the current transaction commits; at once outside one."""
    resolved: Task = import_string(task) if isinstance(task, str) else task
    transaction.on_commit(lambda: resolved.apply_async(args=args, kwargs=kwargs))
