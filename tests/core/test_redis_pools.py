"""Property 8 under load: the project's Redis pools open between 5 and 20 connections and serve everyone.

Each simulated user checks a connection out of the pool, uses it (PING) and holds it until the test lets
go, so the number of connections open at once is known, not hoped for. The order is fixed by conditions,
never by time: the first users take every connection the pool will open; only then do the users beyond the
pool's size ask for one (the test sees each of them enter the pool's wait while no connection is free), and
only then are the holders released, so each waiting user gets a freed connection.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from django.conf import settings
from django.core.cache import caches
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core.redis import redis_client
from tests.wait import wait_until

WAIT_SECONDS = 10.0


def idle_connections(pool: redis.BlockingConnectionPool) -> int:
    # under the queue's own lock: users take and return connections from other threads meanwhile
    with pool.pool.mutex:
        return sum(1 for connection in pool.pool.queue if connection is not None)


def connections_in_use(pool: redis.BlockingConnectionPool) -> int:
    return len(pool._connections) - idle_connections(pool)


class CountingQueue:
    """The pool's own queue, counting the callers that asked it for a connection (behaviour unchanged)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.asked = 0
        self.lock = threading.Lock()

    def get(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.asked += 1
        return self.inner.get(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def saturate(client: redis.Redis, users: int) -> tuple[int, int, list[BaseException]]:
    """`users` threads each take a pool connection and hold it; returns (in use at the peak, opened, errors)."""
    pool = client.connection_pool
    errors: list[BaseException] = []
    release = threading.Event()

    def user() -> None:
        # Holding a checked-out connection, as a request in flight does. Not a blocking command: the pools'
        # socket timeouts (1-2 s) would end a long BLPOP under load before the test let it go.
        try:
            connection = pool.get_connection()
            try:
                connection.send_command("PING")
                assert connection.read_response() in (b"PONG", "PONG")
                release.wait(WAIT_SECONDS)
            finally:
                pool.release(connection)
        except BaseException as error:  # collected and asserted on by the test
            errors.append(error)

    threads = [threading.Thread(target=user) for _ in range(users)]
    holders, waiters = threads[: pool.max_connections], threads[pool.max_connections :]
    for thread in holders:
        thread.start()
    wait_until(
        lambda: connections_in_use(pool) >= len(holders) or bool(errors),
        timeout=WAIT_SECONDS,
        what="the pool to saturate",
    )
    peak = connections_in_use(pool)
    counting = CountingQueue(pool.pool)
    pool.pool = counting
    try:
        for thread in waiters:
            thread.start()
        # every further user has asked the full pool for a connection (and none was free): it waits
        wait_until(
            lambda: counting.asked >= len(waiters) or bool(errors),
            timeout=WAIT_SECONDS,
            what="the users beyond the pool to ask",
        )
        peak = max(peak, connections_in_use(pool))
        release.set()
        for thread in threads:
            thread.join(WAIT_SECONDS)
        assert not any(thread.is_alive() for thread in threads), "a user was never served"
    finally:
        release.set()
        pool.pool = counting.inner
    return peak, len(pool._connections), errors


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
