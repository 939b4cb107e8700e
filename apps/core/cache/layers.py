"""The two-layer cache itself: L1 (apps/core/cache/local.py) over Redis L2, the mechanism
behind the functions apps call in apps/core/cache (read its docstring first).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
from django.conf import settings

from apps.core import codec
from apps.core.breaker import CircuitBreaker
from apps.core.cache.envelope import Envelope, decode_envelope, encode_envelope
from apps.core.cache.local import Clock, InvalidationListener, LocalCache
from apps.core.cache.shared import shared_cache
from apps.core.metrics import CACHE_DEGRADED, CACHE_REQUESTS
from apps.core.redis import REDIS_ERRORS, redis_client
from apps.core.redis import key as redis_key
from apps.core.request_scope import is_database_timeout, record_cache_lookup

logger = logging.getLogger(__name__)

T = TypeVar("T")
Ttl = int | Callable[[T], int] | None

# A trader's own profile/portfolio must show an order the moment it commits, on
# whichever process serves the next request: such data lives in Redis only.
READ_YOUR_WRITES = frozenset({"profiles"})
FILL_LOCK_SECONDS = 5  # longest a loader may hold the cross-process fill lock
FILL_WAIT_SECONDS = 2.0  # how long another process waits for that fill before loading itself
FILL_POLL_SECONDS = 0.01

# Store the value only if our fill lock is still there: an invalidation deletes
# the lock, so a fill that began before a write never stores the old value.
_FILL_IF_LOCK_HELD = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""


class CacheMiss(Exception):
    """A value `read_cached` found missing on the event loop: the read runs again in a thread."""


# Set while `read_cached` runs a read on the event loop: `cached` then never calls a loader.
cache_only: contextvars.ContextVar[bool] = contextvars.ContextVar("cache_only", default=False)


def _count(namespace: str, result: str) -> None:
    """Count a lookup in the metric and on the request being served (its API latency's cache label)."""
    CACHE_REQUESTS.labels(namespace=namespace, result=result).inc()
    record_cache_lookup(result)


def ttl_for(namespace: str) -> int:
    """The configured TTL of a data type (Property 26); unknown namespaces are a programming error."""
    try:
        return int(settings.CACHE_TTLS[namespace])
    except KeyError:
        raise ValueError(f"cache namespace {namespace!r} has no TTL in settings.CACHE_TTLS") from None


class TwoLayerCache:
    """The mechanism behind apps/core/cache: L1 over Redis L2, single-flight fills, invalidation, fallbacks."""

    def __init__(
        self,
        *,
        alias: str = "default",
        clock: Clock = time.time,
        l1_max_entries: int | None = None,
        l1_max_ttl: float | None = None,
        circuit_seconds: float | None = None,
        pubsub_client: Callable[[], redis.Redis] = redis_client,
    ) -> None:
        self.alias = alias
        self.clock = clock
        self.local = LocalCache(max_entries=l1_max_entries or settings.CACHE_L1_MAX_ENTRIES, clock=clock)
        self.l1_max_ttl = float(l1_max_ttl or settings.CACHE_L1_MAX_TTL)
        self.breaker = CircuitBreaker(
            failures_to_open=1, cooldown_seconds=circuit_seconds or settings.CACHE_CIRCUIT_SECONDS, clock=clock
        )
        self.pubsub_client = pubsub_client
        self.channel = redis_key("cache", "invalidate")
        self.listener = InvalidationListener(
            connect=lambda: self.pubsub_client(),
            channel=self.channel,
            drop=self.drop_local,
            forget_all=self.local.clear,
        )
        self._key_locks: dict[str, threading.Lock] = {}
        self._key_locks_guard = threading.Lock()
        # Keys this process is filling now, with the invalidations that arrived meanwhile:
        # a fill that saw one must not put its (possibly older) value into L1.
        self._fills_in_flight: dict[str, int] = {}

    # --- public API ---------------------------------------------------------------------
    def cached(self, namespace: str, key: str, loader: Callable[[], T], *, ttl: Ttl[T] = None) -> T:
        """The value under (namespace, key); on a miss `loader()` runs once and fills both layers.

        `ttl` defaults to the namespace's; a callable gets the loaded value and returns
        its TTL (a leaderboard page lives only until its snapshot turns 5 minutes old).
        Inside `read_cached`'s first attempt a miss raises CacheMiss instead of loading.
        """
        if cache_only.get():
            found, value = self.peek(namespace, key)
            if not found:
                raise CacheMiss(f"{namespace}:{key}")
            return value
        if not settings.CACHE_ENABLED:
            _count(namespace, "disabled")
            return loader()
        full_key = f"{namespace}:{key}"
        use_local = namespace not in READ_YOUR_WRITES and self._local_usable()
        if use_local and (hit := self.local.get(full_key)) is not None:
            _count(namespace, "l1_hit")
            return self._decode(hit)
        if self.breaker.is_open:
            CACHE_DEGRADED.inc()
            _count(namespace, "bypass")
            return loader()
        with self._key_lock(full_key):
            try:
                return self._through_redis(namespace, full_key, loader, ttl, use_local)
            except REDIS_ERRORS as error:
                self._degraded("read", error)
                return loader()

    def peek(self, namespace: str, key: str) -> tuple[bool, Any]:
        """(True, value) when (namespace, key) is cached in either layer, else (False, None); never loads.

        For async code: a hit costs no thread hop (L1, or one Redis GET); only a miss needs the
        loader, which the caller runs in a thread through `cached`.
        """
        full_key = f"{namespace}:{key}"
        use_local = namespace not in READ_YOUR_WRITES and self._local_usable()
        if use_local and (hit := self.local.get(full_key)) is not None:
            _count(namespace, "l1_hit")
            return True, self._decode(hit)
        if not settings.CACHE_ENABLED or self.breaker.is_open:
            return False, None
        try:
            envelope = self._read_l2(self._backend_client(), full_key)
        except REDIS_ERRORS as error:
            self._degraded("read", error)
            return False, None
        if envelope is None:
            return False, None
        _count(namespace, "l2_hit")
        if use_local:
            self._fill_local(full_key, envelope)
        return True, self._decode(envelope.value)

    def invalidate(self, namespace: str, key: str | Iterable[str]) -> None:
        """Drop (namespace, key), or each of several keys, everywhere: L2, any fill in flight, every process' L1.

        One Redis round trip however many keys (the order path drops a trader's several at once).
        """
        full_keys = [f"{namespace}:{k}" for k in ([key] if isinstance(key, str) else key)]
        for full_key in full_keys:
            self.drop_local(full_key)
        if not full_keys:
            return
        if self.breaker.is_open:
            CACHE_DEGRADED.inc()
            return
        try:
            pipe = self._backend_client().pipeline(transaction=False)
            pipe.delete(*[self._l2_key(k) for k in full_keys], *[self._l2_key(f"fill:{k}") for k in full_keys])
            if namespace not in READ_YOUR_WRITES:  # those never enter an L1: nobody listens for them
                for full_key in full_keys:
                    pipe.publish(self.channel, full_key)
            pipe.execute()
        except REDIS_ERRORS as error:
            self._degraded("invalidate", error)

    def stage_invalidate(self, pipe: redis.client.Pipeline, namespace: str, keys: Iterable[str]) -> None:
        """`invalidate` of a read-your-writes namespace staged on someone's pipeline (the order engine's one
        round trip after each batch): those keys never enter an L1, so dropping them from L2 is all it takes."""
        assert namespace in READ_YOUR_WRITES, "other namespaces must reach every process' L1 (invalidate)"
        full_keys = [f"{namespace}:{k}" for k in keys]
        if full_keys:
            pipe.delete(*[self._l2_key(k) for k in full_keys], *[self._l2_key(f"fill:{k}") for k in full_keys])

    def invalidate_namespace(self, namespace: str) -> None:
        """Drop every key of a namespace (e.g. all leaderboard pages after a rebuild)."""
        prefix = f"{namespace}:"
        self.drop_local(f"{prefix}*")
        if self.breaker.is_open:
            CACHE_DEGRADED.inc()
            return
        try:
            client = self._backend_client()
            for pattern in (f"{prefix}*", f"fill:{prefix}*"):
                for batch in _chunks(client.scan_iter(match=self._l2_key(pattern), count=500), 500):
                    client.delete(*batch)
            client.publish(self.channel, f"{prefix}*")
        except REDIS_ERRORS as error:
            self._degraded("invalidate", error)

    def put(self, namespace: str, key: str, value: Any, *, ttl: int | None = None) -> None:
        """Write-through (warm-up, rebuilds): store a fresh value in L2; every L1 drops its older copy."""
        if self.breaker.is_open:
            return
        ttl = ttl or ttl_for(namespace)
        full_key = f"{namespace}:{key}"
        self.drop_local(full_key)
        try:
            client = self._backend_client()
            encoded = encode_envelope(value, expires_at=self.clock() + ttl)
            client.set(self._l2_key(full_key), encoded, px=ttl * 1000)
            self._keep_stale(client, full_key, encoded, ttl)
            client.delete(self._l2_key(f"fill:{full_key}"))
            client.publish(self.channel, full_key)  # other processes drop their older copy
        except REDIS_ERRORS as error:
            self._degraded("write", error)

    def drop_local(self, full_key_or_prefix: str) -> None:
        if full_key_or_prefix.endswith("*"):
            prefix = full_key_or_prefix[:-1]
            self.local.delete_prefix(prefix)
            for key in [k for k in self._fills_in_flight if k.startswith(prefix)]:
                self._fills_in_flight[key] += 1
        else:
            self.local.delete(full_key_or_prefix)
            if full_key_or_prefix in self._fills_in_flight:
                self._fills_in_flight[full_key_or_prefix] += 1

    # --- internals ------------------------------------------------------------------------
    def _through_redis(self, namespace: str, full_key: str, loader: Callable[[], T], ttl: Ttl[T], use_local: bool) -> T:
        client = self._backend_client()
        # Another thread of this process may have filled it while we waited for the key lock.
        if use_local and (hit := self.local.get(full_key)) is not None:
            _count(namespace, "l1_hit")
            return self._decode(hit)
        envelope = self._read_l2(client, full_key)
        if envelope is not None:
            self.breaker.reset()
            _count(namespace, "l2_hit")
            if use_local:
                self._fill_local(full_key, envelope)
            return self._decode(envelope.value)
        _count(namespace, "miss")
        self._fills_in_flight[full_key] = 0
        try:
            return self._fill(namespace, full_key, loader, ttl, use_local, client)
        finally:
            self._fills_in_flight.pop(full_key, None)

    def _fill(
        self, namespace: str, full_key: str, loader: Callable[[], T], ttl: Ttl[T], use_local: bool, client: redis.Redis
    ) -> T:
        token = uuid.uuid4().hex
        lock_key = self._l2_key(f"fill:{full_key}")
        if not client.set(lock_key, token, nx=True, ex=FILL_LOCK_SECONDS):
            envelope = self._wait_for_fill(client, full_key)
            if envelope is not None:
                if use_local:
                    self._fill_local(full_key, envelope)
                return self._decode(envelope.value)
            token = ""  # the other filler is slow or gone: load, but do not store over its lock
        elif (envelope := self._read_l2(client, full_key)) is not None:
            # Filled between our miss and our lock (the filler released its lock already).
            client.delete(lock_key)
            if use_local:
                self._fill_local(full_key, envelope)
            return self._decode(envelope.value)
        try:
            value = loader()
        except Exception as error:
            if not is_database_timeout(error) or (stale := self._read_stale(client, full_key)) is None:
                raise
            logger.warning("cache: the database timed out loading %s; serving its last value, marked stale", full_key)
            _count(namespace, "stale")
            return self._decode(stale.value)
        seconds = max(1, ttl(value) if callable(ttl) else ttl or ttl_for(namespace))
        encoded = encode_envelope(value, expires_at=self.clock() + seconds)
        # The writer's invalidation deletes our fill lock, so "stored" also says no write raced this fill;
        # the pub/sub message that reports the same thing may arrive after we get here.
        stored = bool(token) and bool(
            client.eval(_FILL_IF_LOCK_HELD, 2, self._l2_key(full_key), lock_key, token, encoded, seconds * 1000)
        )
        if stored:
            self._keep_stale(client, full_key, encoded, seconds)
        if use_local and stored and not self._fills_in_flight.get(full_key):
            self._fill_local(full_key, Envelope(self.clock() + seconds, self._encode(value)))
        return value

    def _wait_for_fill(self, client: redis.Redis, full_key: str) -> Envelope | None:
        deadline = time.monotonic() + FILL_WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(FILL_POLL_SECONDS)
            envelope = self._read_l2(client, full_key)
            if envelope is not None:
                return envelope
        return None

    def _read_l2(self, client: redis.Redis, full_key: str) -> Envelope | None:
        raw = client.get(self._l2_key(full_key))
        envelope = decode_envelope(raw) if isinstance(raw, bytes) else None
        if envelope is None or envelope.expires_at <= self.clock():
            return None
        return envelope

    def _keep_stale(self, client: redis.Redis, full_key: str, encoded: bytes, seconds: int) -> None:
        """The copy a query timeout may serve: the same envelope, kept CACHE_STALE_SECONDS past its TTL."""
        client.set(self._l2_key(f"stale:{full_key}"), encoded, px=(seconds + settings.CACHE_STALE_SECONDS) * 1000)

    def _read_stale(self, client: redis.Redis, full_key: str) -> Envelope | None:
        try:
            raw = client.get(self._l2_key(f"stale:{full_key}"))
        except REDIS_ERRORS:
            return None
        return decode_envelope(raw) if isinstance(raw, bytes) else None

    def _fill_local(self, full_key: str, envelope: Envelope) -> None:
        expires_at = min(envelope.expires_at, self.clock() + self.l1_max_ttl)
        self.local.set(full_key, envelope.value, expires_at=expires_at)

    def _local_usable(self) -> bool:
        if self.breaker.is_open:
            return False
        self.listener.ensure_started()
        return self.listener.subscribed

    def _degraded(self, operation: str, error: BaseException) -> None:
        CACHE_DEGRADED.inc()
        if self.breaker.trip():
            logger.warning(
                "cache: Redis failed during %s (%s); serving from MongoDB for %.0f s before retrying",
                operation,
                error,
                self.breaker.cooldown,
            )
        self.local.clear()

    @contextmanager
    def _key_lock(self, full_key: str) -> Iterator[None]:
        with self._key_locks_guard:
            lock = self._key_locks.setdefault(full_key, threading.Lock())
        with lock:
            yield
        with self._key_locks_guard:
            if not lock.locked():
                self._key_locks.pop(full_key, None)

    def _backend_client(self) -> redis.Redis:
        return shared_cache(self.alias).client.get_client(write=True)  # type: ignore[attr-defined]

    def _l2_key(self, full_key: str) -> str:
        return str(shared_cache(self.alias).make_key(full_key))

    @staticmethod
    def _encode(value: Any) -> bytes:
        return codec.dumps(value)

    @staticmethod
    def _decode(raw: bytes) -> Any:
        return codec.loads(raw)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
