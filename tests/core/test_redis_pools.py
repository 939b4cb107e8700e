"""Property 8 under load: the project's Redis pools open between 5 and 20 connections and serve everyone.

Each simulated user holds a pool connection in a blocking read (BLPOP) until the test releases it, so the
number of connections open at once is known, not hoped for: the test waits until the pool is saturated,
reads its state, then answers every reader from a connection of its own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import redis
from django.conf import settings
from django.core.cache import caches
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core.redis import redis_client

WAIT_SECONDS = 10.0


def open_connections(pool: redis.BlockingConnectionPool) -> int:
    return len(pool._connections)


def connections_in_use(pool: redis.BlockingConnectionPool) -> int:
    idle = {connection for connection in pool.pool.queue if connection is not None}
    return len(pool._connections) - len(idle)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.001)


def saturate(client: redis.Redis, users: int) -> tuple[int, int, list[BaseException]]:
    """`users` threads each block on a pool connection; returns (in use at the peak, opened, errors)."""
    pool = client.connection_pool
    keys = [f"test-pool:{uuid.uuid4().hex}:{n}" for n in range(users)]
    errors: list[BaseException] = []

    def user(key: str) -> None:
        try:
            assert client.blpop([key], timeout=WAIT_SECONDS) is not None
        except BaseException as error:  # collected and asserted on by the test
            errors.append(error)

    threads = [threading.Thread(target=user, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    expected_peak = min(users, pool.max_connections)
    wait_until(lambda: connections_in_use(pool) >= expected_peak or bool(errors), "the pool to saturate")
    peak = connections_in_use(pool)
    answer = redis.Redis.from_url(settings.REDIS_URL)  # outside the pool under test
    for key in keys:
        answer.rpush(key, "done")
    for thread in threads:
        thread.join(WAIT_SECONDS)
    answer.delete(*keys)
    answer.close()
    return peak, open_connections(pool), errors


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(users=st.integers(min_value=5, max_value=60), pool=st.sampled_from(["project", "cache"]))
def test_under_load_every_pool_holds_between_5_and_20_connections_and_serves_every_user(users: int, pool: str) -> None:
    """Feature: trading-performance-optimization, Property 8: For any Redis connection pool state, the number of
    connections should be between 5 and 20 inclusive — with 5 to 60 users holding connections at once, the
    project's pool and the cache's pool each open between 5 and 20, and a user beyond the 20th waits for a free
    connection instead of failing."""
    client = redis_client() if pool == "project" else caches["default"].client.get_client()
    peak, opened, errors = saturate(client, users)
    assert errors == []
    assert 5 <= peak <= 20
    assert 5 <= opened <= 20
    assert opened <= settings.REDIS_POOL_MAX
