"""A pool of threads for blocking API work, so requests that wait on MongoDB wait side by side.

Under ASGI, Django runs every sync view on the process' one "thread-sensitive" thread:
two orders in one web process queue behind each other even while each only waits on
the database (an order is ~5 round trips, most of its time). `in_pool(work)` runs sync
work on a pool of `API_WORK_THREADS` threads instead. The work must be thread-safe on
its own (the ORM's connection is per thread; pymongo's client is shared and pooled).
Context variables (the request's MongoDB deadline, its cache lookups) go along.
"""

import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings

P = ParamSpec("P")
T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_guard = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.API_WORK_THREADS, thread_name_prefix="api-work")
        return _pool


def in_pool(work: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
    """`work` as a coroutine function that runs it on the API's work threads."""
    return sync_to_async(work, thread_sensitive=False, executor=_executor())
