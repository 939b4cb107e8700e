"""The project's Redis clients: one bounded pool per process, sync and async.

Property 8: a pool holds 5 to 20 connections. A BlockingConnectionPool makes a
request wait (with a timeout) for a free connection instead of failing when
all are busy. Everything that talks to Redis directly takes its client here.
"""

from functools import cache

import redis
import redis.asyncio
from django.conf import settings

SOCKET_TIMEOUT_SECONDS = 2.0
POOL_WAIT_SECONDS = 2.0


@cache
def redis_client() -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.REDIS_POOL_MAX,
        timeout=POOL_WAIT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


def async_redis_client() -> redis.asyncio.Redis:
    """A client for the running event loop (asyncio pools cannot cross loops)."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.REDIS_POOL_MAX,
        timeout=POOL_WAIT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
    )
    return redis.asyncio.Redis(connection_pool=pool)


def key(*parts: object) -> str:
    """A namespaced Redis key: key("quote", "ACME") -> "trading:quote:ACME"."""
    return ":".join([settings.REDIS_KEY_PREFIX, *map(str, parts)])
