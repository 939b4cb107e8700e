"""The one cache: a small in-process L1 (bounded LRU) over Redis L2 (the django-redis default cache).

    value = cached("leaderboards", "value:1", load_page)   # cache-through (Property 28)
    invalidate_after_commit("profiles", str(user_id))      # after a write (Property 34)

- TTLs come per data type from settings.CACHE_TTLS (Property 26); the namespace
  names the data type. An L1 entry lives at most CACHE_L1_MAX_TTL seconds and
  never longer than its L2 entry.
- Single-flight: a burst of misses on one key runs the loader once. Threads of
  a process wait on a per-key lock; other processes wait for a short Redis
  fill lock (SET NX) and poll L2 instead of stampeding the database.
- Invalidation reaches every process: `invalidate` (one key or several, one Redis round
  trip) deletes the L2 entry and the pending fill lock (so a fill that started before the write cannot store the
  old value), drops the local entry and publishes the key on a Redis pub/sub
  channel; a listener thread in each process (started lazily) drops it there.
  L1 is used only while that listener is subscribed, so a process that could
  miss an invalidation never serves from L1. Namespaces that must read their
  own writes across processes (READ_YOUR_WRITES) never enter L1 at all.
- Query timeout (the database missed the request's deadline): the loader's
  timeout is answered from the last value stored for the key, kept
  CACHE_STALE_SECONDS past its TTL under `stale:<key>`, and the lookup is
  counted "stale" (the response says so in a Warning header); with no such
  value the timeout propagates and the API answers 503.
- Redis down: every call falls back to the loader (MongoDB), logs, counts
  CACHE_DEGRADED and never fails; a circuit breaker skips Redis for
  CACHE_CIRCUIT_SECONDS so a dead Redis does not add a timeout to every request.
- Async views: `await read_cached(selector, ...)` runs a cache-backed selector on the
  event loop when everything it reads is cached (no thread hop: an L1 hit or one Redis
  GET per value); on any miss it runs it again in a thread, where loaders may query
  MongoDB (the ORM refuses to run on the event loop).

Where it lives: this module is what apps call (and the process' cache); `layers.py` the
two-layer mechanism; `local.py` L1 and its invalidation listener; `envelope.py` the L2 format.
The Redis eviction-policy check (Property 22) is in apps/core/redis.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.core.exceptions import SynchronousOnlyOperation
from django_mongodb_backend import transaction

from apps.core.cache.layers import READ_YOUR_WRITES, CacheMiss, Ttl, TwoLayerCache, cache_only, ttl_for
from apps.core.cache.local import LocalCache
from apps.core.pressure import register_shedder

__all__ = [
    "READ_YOUR_WRITES",
    "CacheMiss",
    "LocalCache",
    "TwoLayerCache",
    "cache_put",
    "cached",
    "default_cache",
    "invalidate",
    "invalidate_after_commit",
    "invalidate_namespace",
    "peek",
    "read_cached",
    "reset_default_cache",
    "ttl_for",
]

T = TypeVar("T")
P = ParamSpec("P")


async def read_cached(read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`read(*args, **kwargs)` for an async view: on the event loop when every value it needs is cached.

    `read` is a sync selector whose MongoDB reads all go through `cached` (Redis reads are
    fine on the loop: one round trip each). A miss, a tripped breaker or a disabled cache
    raises CacheMiss before any loader runs; the read then runs in a thread, as a sync
    view would. SynchronousOnlyOperation (a selector that queried MongoDB directly) takes
    the same way out, so such a selector is slower, never wrong.
    """
    token = cache_only.set(True)
    try:
        return read(*args, **kwargs)
    except (CacheMiss, SynchronousOnlyOperation):
        pass
    finally:
        cache_only.reset(token)
    return await sync_to_async(read)(*args, **kwargs)


_default: TwoLayerCache | None = None
_default_guard = threading.Lock()


def default_cache() -> TwoLayerCache:
    """The process' cache (created on first use, so a forked worker builds its own)."""
    global _default
    with _default_guard:
        if _default is None:
            _default = TwoLayerCache()
            local = _default.local
            register_shedder("l1_cache", local.clear)  # memory pressure: L1 refills from Redis
        return _default


def reset_default_cache() -> None:
    """Forget the process' cache (tests that change settings or kill Redis)."""
    global _default
    with _default_guard:
        if _default is not None:
            _default.listener.stop()
        _default = None


def cached(namespace: str, key: str, loader: Callable[[], T], *, ttl: Ttl[T] = None) -> T:
    return default_cache().cached(namespace, key, loader, ttl=ttl)


def peek(namespace: str, key: str) -> tuple[bool, Any]:
    return default_cache().peek(namespace, key)


def invalidate(namespace: str, key: str | list[str]) -> None:
    default_cache().invalidate(namespace, key)


def stage_invalidate(pipe: Any, namespace: str, keys: list[str]) -> None:
    """Invalidate read-your-writes keys on a pipeline the caller executes (after its own commit)."""
    default_cache().stage_invalidate(pipe, namespace, keys)


def invalidate_namespace(namespace: str) -> None:
    default_cache().invalidate_namespace(namespace)


def invalidate_after_commit(namespace: str, key: str | list[str] | None = None) -> None:
    """Invalidate once the surrounding MongoDB transaction commits (at once outside one); key=None: all keys.

    A list of keys is dropped in one Redis round trip.
    """
    if key is None:
        transaction.on_commit(lambda: invalidate_namespace(namespace))
    else:
        transaction.on_commit(lambda: invalidate(namespace, key))


def cache_put(namespace: str, key: str, value: Any, *, ttl: int | None = None) -> None:
    default_cache().put(namespace, key, value, ttl=ttl)
