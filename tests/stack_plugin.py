"""Pytest plugin: throwaway services for the test session.

Loaded with `-p tests.stack_plugin` (pyproject addopts), in every pytest-xdist worker too: each worker
has services of its own, the controller none. Its hook is a wrapper,
so it runs before pytest-django reads the settings: the embedded SecantusDB
(on a free port, in a temporary folder) and the Redis database chosen here
exist before Django looks for them. Both are cleaned up at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator
from typing import Any

import pytest
import redis

from trading import devstack

_state: dict[str, Any] = {}
TEST_REDIS_DATABASES = range(1, 16)


def _claim_redis_database(url: str) -> tuple[str, int]:
    """A Redis database no other test run is using (several may share one Redis)."""
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    client = redis.Redis.from_url(f"{base}/0")
    for number in TEST_REDIS_DATABASES:
        lock = f"trading-tests:lock:{number}"
        if _holder_gone(client.get(lock)):
            client.delete(lock)  # a killed run's claim (its process is gone): free again
        if client.set(lock, os.getpid(), nx=True, ex=3600):
            _state["redis_lock"] = (client, number)
            return f"{base}/{number}", number
    raise pytest.UsageError("every Redis test database (1-15) is claimed by another run")


def _holder_gone(holder: bytes | None) -> bool:
    if holder is None or not holder.isdigit():
        return False
    try:
        os.kill(int(holder), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def _parallel_controller(early_config: pytest.Config) -> bool:
    """The xdist controller (`-n N`) runs no test and starts nothing: each worker starts services of its own
    (its SecantusDBs, a Redis database, a key prefix), so no worker waits on another's database server."""
    workers = getattr(early_config.known_args_namespace, "numprocesses", None)
    return bool(workers) and "PYTEST_XDIST_WORKER" not in os.environ


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: Any, args: list[str]) -> Generator[None]:
    os.environ["TESTING"] = "1"
    os.environ.setdefault("ENGINE_SHARDS", "2")  # accounts spread over two engines, as production may run them
    os.environ["DJANGO_DEBUG"] = "true"  # settings default to production; tests of it override this
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading.settings")
    if _parallel_controller(early_config):
        return (yield)
    context = devstack.services(throwaway=True)
    stack = context.__enter__()
    _state["context"] = context
    url, _number = _claim_redis_database(stack.env["REDIS_URL"])
    redis.Redis.from_url(url).flushdb()
    started = {**stack.env, "REDIS_URL": url, "REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}"}
    os.environ.update(started)
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    if "redis_lock" in _state:
        client, number = _state.pop("redis_lock")
        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
        client.delete(f"trading-tests:lock:{number}")
    if "context" in _state:
        _state.pop("context").__exit__(None, None, None)
