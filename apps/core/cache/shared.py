"""One django-redis cache object a process, for the code that talks to the cache's Redis itself."""

from __future__ import annotations

from typing import Any

from django.core.cache import BaseCache, caches
from django.core.signals import setting_changed

_shared_caches: dict[str, BaseCache] = {}


def shared_cache(alias: str = "default") -> BaseCache:
    """The cache `alias` as one object a process. Django's `caches` keeps one a thread and async context, so
    under ASGI every request built its own, with a django-redis client connecting anew (~0.3 ms a request);
    django-redis' cache and client are thread-safe (one connection pool), so one serves them all."""
    found = _shared_caches.get(alias)
    if found is None:
        found = _shared_caches[alias] = caches.create_connection(alias)
    return found


def _forget_shared_caches(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHES":  # as Django's `caches` does: a test's settings take effect at once
        _shared_caches.clear()


setting_changed.connect(_forget_shared_caches)
