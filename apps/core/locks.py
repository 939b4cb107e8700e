"""One holder at a time per key, across every process: a leased Redis lock with a local queue in front.

    with one_at_a_time(f"trader:{trader_id}", wait_seconds=2.0):
        ...  # this trader's order; the next one waits its turn instead of conflicting

- Crash-safe: the Redis key carries a lease (`lease_seconds`); a holder that dies
  (kill -9, lost network) stops blocking others when its lease runs out. A release
  deletes the key only while it still holds our token, so a holder whose lease ran
  out cannot release its successor's lock.
- Work-conserving: within a process, callers for one key queue on a local lock,
  so only one of them polls Redis; the lock is free again the moment it is
  released (the next local caller takes it without a Redis poll gap when it wins).
- The lock is for liveness, not safety: whatever it protects must stay correct
  if two holders ever overlap (a lease that ran out under a paused holder), e.g. a
  MongoDB transaction with conditional writes. So a Redis failure degrades to
  "no lock" (logged, counted), never to an error.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from apps.core.metrics import LOCK_DEGRADED
from apps.core.redis import key as redis_key
from apps.core.redis import redis_client

logger = logging.getLogger(__name__)

POLL_FIRST_SECONDS = 0.001
POLL_MAX_SECONDS = 0.01
REDIS_ERRORS = (redis.RedisError, OSError)

_RELEASE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LockTimeout(Exception):
    """The lock was not free within the wait budget."""


class _LocalQueues:
    """One threading lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def turn(self, name: str, timeout: float) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(name, (threading.Lock(), 0))
            self._locks[name] = (lock, users + 1)
        try:
            if not lock.acquire(timeout=max(0.0, timeout)):
                raise LockTimeout(name)
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                lock, users = self._locks[name]
                if users == 1:
                    del self._locks[name]
                else:
                    self._locks[name] = (lock, users - 1)


_local = _LocalQueues()


def _acquire(client: redis.Redis, name: str, token: str, *, deadline: float, lease_ms: int) -> None:
    pause = POLL_FIRST_SECONDS
    while not client.set(name, token, nx=True, px=lease_ms):
        if time.monotonic() + pause > deadline:
            raise LockTimeout(name)
        time.sleep(pause)
        pause = min(POLL_MAX_SECONDS, pause * 2)


@contextmanager
def one_at_a_time(
    name: str, *, wait_seconds: float, lease_seconds: float = 5.0, client: redis.Redis | None = None
) -> Iterator[bool]:
    """Hold the lock `name` (yields True), or run unlocked when Redis is unavailable (yields False).

    Raises LockTimeout when another holder keeps it longer than `wait_seconds`.
    """
    deadline = time.monotonic() + wait_seconds
    full_name = redis_key("lock", name)
    token = uuid.uuid4().hex
    with _local.turn(full_name, wait_seconds):
        client = client or redis_client()
        try:
            _acquire(client, full_name, token, deadline=deadline, lease_ms=int(lease_seconds * 1000))
            held = True
        except REDIS_ERRORS as error:
            logger.warning("lock %s unavailable, running without it: %s", name, error)
            LOCK_DEGRADED.inc()
            held = False
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            try:
                client.eval(_RELEASE_IF_OURS, 1, full_name, token)
            except REDIS_ERRORS as error:  # the lease frees it
                logger.warning("lock %s not released (its lease will free it): %s", name, error)
