"""L1: the bounded in-process LRU, and the listener that keeps it honest across processes.

Every process' L1 drops a key when any process invalidates it: the writer publishes the key on
a Redis pub/sub channel and each process' `InvalidationListener` (a daemon thread) drops it here.
The two-layer cache uses L1 only while its listener is subscribed (apps/core/cache/layers.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable

import redis

from apps.core.redis import REDIS_ERRORS

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
LISTEN_POLL_SECONDS = 0.25  # how often the listener checks whether it should stop


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


class InvalidationListener:
    """A daemon thread subscribed to the invalidation channel; drops keys from this process' L1.

    `drop(key_or_prefix)` gets each published key (a prefix ends with "*"); `forget_all()` runs
    whenever invalidations may have been missed (before subscribing, after losing Redis).
    """

    def __init__(
        self,
        *,
        connect: Callable[[], redis.Redis],
        channel: str,
        drop: Callable[[str], None],
        forget_all: Callable[[], object],
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._drop = drop
        self._forget_all = forget_all
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
                pubsub = self._connect().pubsub()
                try:
                    pubsub.subscribe(self._channel)
                    self._listen(pubsub)
                finally:
                    pubsub.close()
            except REDIS_ERRORS as error:
                logger.warning("cache invalidation listener lost Redis (%s); L1 off until it is back", error)
            # Invalidations may have been missed: nothing local can be trusted.
            self._subscribed.clear()
            self._forget_all()
            self._stopping.wait(1.0)

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=LISTEN_POLL_SECONDS)
            if message is None:
                continue
            if message["type"] == "subscribe":
                self._forget_all()  # anything cached before we listened may be stale
                self._subscribed.set()
            elif message["type"] == "message":
                self._drop(message["data"].decode())
