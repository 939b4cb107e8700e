"""The one cache: a small in-process L1 (bounded LRU) over Redis L2 (the django-redis default cache).

    value = cached("leaderboards", "value:1", load_page)   # cache-through (Property 28)
    invalidate_after_commit("profiles", str(user_id))      # after a write (Property 34)

- TTLs come per data type from settings.CACHE_TTLS (Property 26); the namespace
  names the data type. An L1 entry lives at most CACHE_L1_MAX_TTL seconds and
  never longer than its L2 entry.
- Single-flight: a burst of misses on one key runs the loader once. Threads of
  a process wait on a per-key lock; other processes wait for a short Redis
  fill lock (SET NX) and poll L2 instead of stampeding the database.
- Invalidation reaches every process: `invalidate` deletes the L2 entry and the
  pending fill lock (so a fill that started before the write cannot store the
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
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import checks
from django.core.cache import caches
from django.core.exceptions import SynchronousOnlyOperation
from django_mongodb_backend import transaction

from apps.core import codec
from apps.core.breaker import CircuitBreaker
from apps.core.metrics import CACHE_DEGRADED, CACHE_REQUESTS
from apps.core.pressure import register_shedder
from apps.core.redis import key as redis_key
from apps.core.redis import redis_client
from apps.core.request_scope import is_database_timeout, record_cache_lookup

logger = logging.getLogger(__name__)


def _count(namespace: str, result: str) -> None:
    """Count a lookup in the metric and on the request being served (its API latency's cache label)."""
    CACHE_REQUESTS.labels(namespace=namespace, result=result).inc()
    record_cache_lookup(result)


T = TypeVar("T")
P = ParamSpec("P")
Clock = Callable[[], float]
Ttl = int | Callable[[T], int] | None

# A trader's own profile/portfolio must show an order the moment it commits, on
# whichever process serves the next request: such data lives in Redis only.
READ_YOUR_WRITES = frozenset({"profiles"})
FILL_LOCK_SECONDS = 5  # longest a loader may hold the cross-process fill lock
FILL_WAIT_SECONDS = 2.0  # how long another process waits for that fill before loading itself
FILL_POLL_SECONDS = 0.01
LISTEN_POLL_SECONDS = 0.25  # how often the listener checks whether it should stop
REDIS_ERRORS = (redis.RedisError, OSError)
# L2 values: this marker, the logical expiry, a newline, then the value as JSON (apps/core/codec.py).
# Never pickles: a pickle read from Redis would run code chosen by whoever wrote it.
ENVELOPE_MAGIC = b"json1 "

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


def ttl_for(namespace: str) -> int:
    """The configured TTL of a data type (Property 26); unknown namespaces are a programming error."""
    try:
        return int(settings.CACHE_TTLS[namespace])
    except KeyError:
        raise ValueError(f"cache namespace {namespace!r} has no TTL in settings.CACHE_TTLS") from None


class LocalCache:
    """L1: at most `max_entries` encoded values, least recently used evicted first, each with its own expiry."""

    def __init__(self, *, max_entries: int, clock: Clock) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires_at, value = entry
            if expires_at <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, *, expires_at: float) -> None:
        with self._lock:
            self._entries[key] = (expires_at, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def delete_prefix(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k.startswith(prefix)]:
                del self._entries[key]

    def clear(self) -> int:
        """Drop every entry; returns how many there were."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None


@dataclass
class _Envelope:
    """What L2 holds: the encoded value and its logical expiry (so L1 never outlives L2)."""

    expires_at: float
    value: bytes


class InvalidationListener:
    """A daemon thread subscribed to the invalidation channel; drops keys from this process' L1."""

    def __init__(self, cache: TwoLayerCache) -> None:
        self._cache = cache
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()  # a forked child needs its own thread
        self._subscribed.clear()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="cache-invalidation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._subscribed.clear()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                pubsub = self._cache.pubsub_client().pubsub()
                try:
                    pubsub.subscribe(self._cache.channel)
                    self._listen(pubsub)
                finally:
                    pubsub.close()
            except REDIS_ERRORS as error:
                logger.warning("cache invalidation listener lost Redis (%s); L1 off until it is back", error)
            # Invalidations may have been missed: nothing local can be trusted.
            self._subscribed.clear()
            self._cache.local.clear()
            self._stopping.wait(1.0)

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=LISTEN_POLL_SECONDS)
            if message is None:
                continue
            if message["type"] == "subscribe":
                self._cache.local.clear()  # anything cached before we listened may be stale
                self._subscribed.set()
            elif message["type"] == "message":
                self._cache.drop_local(message["data"].decode())


class TwoLayerCache:
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
        self.listener = InvalidationListener(self)
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
        if _cache_only.get():
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

    def invalidate(self, namespace: str, key: str) -> None:
        """Drop (namespace, key) everywhere: L2, any fill in flight, and every process' L1."""
        self._invalidate(f"{namespace}:{key}", pattern=False)

    def invalidate_keys(self, namespace: str, keys: list[str]) -> None:
        """`invalidate` for several keys of one namespace in one Redis round trip (the order path's)."""
        full_keys = [f"{namespace}:{key}" for key in keys]
        for full_key in full_keys:
            self.drop_local(full_key)
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

    def invalidate_namespace(self, namespace: str) -> None:
        """Drop every key of a namespace (e.g. all leaderboard pages after a rebuild)."""
        self._invalidate(f"{namespace}:", pattern=True)

    def put(self, namespace: str, key: str, value: Any, *, ttl: int | None = None) -> None:
        """Write-through (warm-up, rebuilds): store a fresh value in L2; every L1 drops its older copy."""
        if self.breaker.is_open:
            return
        ttl = ttl or ttl_for(namespace)
        full_key = f"{namespace}:{key}"
        self.drop_local(full_key)
        try:
            client = self._backend_client()
            encoded = self._encode_envelope(value, ttl)
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
        encoded = self._encode_envelope(value, seconds)
        # The writer's invalidation deletes our fill lock, so "stored" also says no write raced this fill;
        # the pub/sub message that reports the same thing may arrive after we get here.
        stored = bool(token) and bool(
            client.eval(_FILL_IF_LOCK_HELD, 2, self._l2_key(full_key), lock_key, token, encoded, seconds * 1000)
        )
        if stored:
            self._keep_stale(client, full_key, encoded, seconds)
        if use_local and stored and not self._fills_in_flight.get(full_key):
            self._fill_local(full_key, _Envelope(self.clock() + seconds, self._encode(value)))
        return value

    def _wait_for_fill(self, client: redis.Redis, full_key: str) -> _Envelope | None:
        deadline = time.monotonic() + FILL_WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(FILL_POLL_SECONDS)
            envelope = self._read_l2(client, full_key)
            if envelope is not None:
                return envelope
        return None

    def _read_l2(self, client: redis.Redis, full_key: str) -> _Envelope | None:
        raw = client.get(self._l2_key(full_key))
        envelope = self._decode_envelope(raw) if isinstance(raw, bytes) else None
        if envelope is None or envelope.expires_at <= self.clock():
            return None
        return envelope

    def _keep_stale(self, client: redis.Redis, full_key: str, encoded: bytes, seconds: int) -> None:
        """The copy a query timeout may serve: the same envelope, kept CACHE_STALE_SECONDS past its TTL."""
        client.set(self._l2_key(f"stale:{full_key}"), encoded, px=(seconds + settings.CACHE_STALE_SECONDS) * 1000)

    def _read_stale(self, client: redis.Redis, full_key: str) -> _Envelope | None:
        try:
            raw = client.get(self._l2_key(f"stale:{full_key}"))
        except REDIS_ERRORS:
            return None
        return self._decode_envelope(raw) if isinstance(raw, bytes) else None

    def _fill_local(self, full_key: str, envelope: _Envelope) -> None:
        expires_at = min(envelope.expires_at, self.clock() + self.l1_max_ttl)
        self.local.set(full_key, envelope.value, expires_at=expires_at)

    def _invalidate(self, full_key: str, *, pattern: bool) -> None:
        published = f"{full_key}*" if pattern else full_key
        self.drop_local(published)
        if self.breaker.is_open:
            CACHE_DEGRADED.inc()
            return
        try:
            client = self._backend_client()
            if pattern:
                for batch in _chunks(client.scan_iter(match=self._l2_key(f"{full_key}*"), count=500), 500):
                    client.delete(*batch)
                for batch in _chunks(client.scan_iter(match=self._l2_key(f"fill:{full_key}*"), count=500), 500):
                    client.delete(*batch)
            else:
                client.delete(self._l2_key(full_key), self._l2_key(f"fill:{full_key}"))
            client.publish(self.channel, published)
        except REDIS_ERRORS as error:
            self._degraded("invalidate", error)

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
        return caches[self.alias].client.get_client(write=True)  # type: ignore[attr-defined]

    def _l2_key(self, full_key: str) -> str:
        return str(caches[self.alias].make_key(full_key))

    @staticmethod
    def _encode(value: Any) -> bytes:
        return codec.dumps(value)

    @staticmethod
    def _decode(raw: bytes) -> Any:
        return codec.loads(raw)

    def _encode_envelope(self, value: Any, ttl: int) -> bytes:
        return b"%s%r\n%s" % (ENVELOPE_MAGIC, self.clock() + ttl, self._encode(value))

    @staticmethod
    def _decode_envelope(raw: bytes) -> _Envelope | None:
        """The envelope in `raw`; None (a miss) for anything this codec did not write, e.g. an old pickle."""
        header, newline, value = raw.partition(b"\n")
        if not newline or not header.startswith(ENVELOPE_MAGIC):
            return None
        try:
            expires_at = float(header[len(ENVELOPE_MAGIC) :])
        except ValueError:
            return None
        return _Envelope(expires_at, value)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class CacheMiss(Exception):
    """A value `read_cached` found missing on the event loop: the read runs again in a thread."""


# Set while `read_cached` runs a read on the event loop: `cached` then never calls a loader.
_cache_only: contextvars.ContextVar[bool] = contextvars.ContextVar("cache_only", default=False)


async def read_cached(read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`read(*args, **kwargs)` for an async view: on the event loop when every value it needs is cached.

    `read` is a sync selector whose MongoDB reads all go through `cached` (Redis reads are
    fine on the loop: one round trip each). A miss, a tripped breaker or a disabled cache
    raises CacheMiss before any loader runs; the read then runs in a thread, as a sync
    view would. SynchronousOnlyOperation (a selector that queried MongoDB directly) takes
    the same way out, so such a selector is slower, never wrong.
    """
    token = _cache_only.set(True)
    try:
        return read(*args, **kwargs)
    except (CacheMiss, SynchronousOnlyOperation):
        pass
    finally:
        _cache_only.reset(token)
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


def invalidate(namespace: str, key: str) -> None:
    default_cache().invalidate(namespace, key)


def invalidate_namespace(namespace: str) -> None:
    default_cache().invalidate_namespace(namespace)


def invalidate_after_commit(namespace: str, key: str | list[str] | None = None) -> None:
    """Invalidate once the surrounding MongoDB transaction commits (at once outside one); key=None: all keys.

    A list of keys is dropped in one Redis round trip.
    """
    if key is None:
        transaction.on_commit(lambda: invalidate_namespace(namespace))
    elif isinstance(key, list):
        transaction.on_commit(lambda: default_cache().invalidate_keys(namespace, key))
    else:
        transaction.on_commit(lambda: invalidate(namespace, key))


def cache_put(namespace: str, key: str, value: Any, *, ttl: int | None = None) -> None:
    default_cache().put(namespace, key, value, ttl=ttl)


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
