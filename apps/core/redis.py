"""The project's Redis clients: one bounded pool per process, sync and async.

Property 8: a pool holds 5 to 20 connections. A BlockingConnectionPool makes a
request wait (with a timeout) for a free connection instead of failing when
all are busy. Everything that talks to Redis directly takes its client here.

Also the memory facts of that Redis and the start-up check of its eviction policy (Property 22).
"""

from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
import redis.asyncio
from django.conf import settings
from django.core import checks

SOCKET_TIMEOUT_SECONDS = 2.0
POOL_WAIT_SECONDS = 2.0
REDIS_ERRORS = (redis.RedisError, OSError)  # what a lost or failing Redis raises


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


@dataclass(frozen=True)
class RedisMemoryStatus:
    used_memory: int
    maxmemory: int  # 0: unbounded
    policy: str
    ratio: float | None  # used / max; None when unbounded

    @property
    def evicts_lru(self) -> bool:
        return self.policy in LRU_POLICIES


LRU_POLICIES = frozenset({"allkeys-lru", "volatile-lru"})
# One Redis holds evictable data (cache values, each with a TTL) and durable data without one (the tick
# stream, the Celery queue and its unacknowledged messages): evict least recently used keys among those
# that expire, never the others.
EVICTION_POLICY = "volatile-lru"


def redis_memory_status(client: redis.Redis | None = None) -> RedisMemoryStatus:
    """Memory facts for the > 80 % alert (Property 22) and the start-up policy check."""
    client = client or redis_client()
    info = client.info("memory")
    maxmemory = int(info.get("maxmemory", 0))
    used = int(info["used_memory"])
    policy = str(info.get("maxmemory_policy") or client.config_get("maxmemory-policy")["maxmemory-policy"])
    return RedisMemoryStatus(used, maxmemory, policy, round(used / maxmemory, 4) if maxmemory else None)


def redis_policy_problem(status: RedisMemoryStatus) -> str | None:
    """Why this Redis cannot serve as an LRU cache beside durable data (Property 22), or None when it can."""
    if status.policy.startswith("allkeys-"):
        return (
            f"Redis maxmemory-policy is {status.policy!r}: a full Redis could evict durable keys (the tick stream, "
            f"queued jobs); set {EVICTION_POLICY} so only cache values (they all expire) are evicted"
        )
    if status.policy != EVICTION_POLICY:
        return f"Redis maxmemory-policy is {status.policy!r}; set {EVICTION_POLICY} so a full cache evicts old values"
    if not status.maxmemory:
        return "Redis has no maxmemory: the LRU policy never applies and the cache can grow without bound"
    return None


@checks.register("redis")
def redis_eviction_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Start-up warning when the Redis we use would not evict old keys once full (Property 22)."""
    try:
        problem = redis_policy_problem(redis_memory_status())
    except REDIS_ERRORS:
        return []  # unreachable Redis is /healthz's business, not a configuration problem
    return (
        []
        if problem is None
        else [
            checks.Warning(
                problem,
                id="core.W001",
                hint=f"CONFIG SET maxmemory <bytes> and CONFIG SET maxmemory-policy {EVICTION_POLICY}",
            )
        ]
    )
