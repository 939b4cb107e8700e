"""Memory pressure: at the memory alert threshold (85 %, Property 25) each process drops what it can rebuild.

The source document's "Memory Limit Exceeded: aggressive cache eviction and
garbage collection". Parts of a process that hold rebuildable memory register
a shedder (the L1 cache, the market hub's backlog of slow connections); the
process sampler calls `MemoryPressureWatch.observe` with the host's memory
use, and at or above the threshold every shedder runs, then a full garbage
collection, at most once per cool-down (a collection is not free, and the
memory it frees shows up only in the next sample). Each action is logged and
counted (`trading_memory_sheds_total`, `trading_memory_shed_items_total`).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

Shedder = Callable[[], int]  # drops what it can rebuild; returns how many items it dropped
SHED_COOLDOWN_SECONDS = 60.0

_shedders: dict[str, Shedder] = {}
_lock = threading.Lock()


def register_shedder(name: str, shedder: Shedder) -> None:
    """Add (or replace) a part of this process that can give memory back under pressure."""
    with _lock:
        _shedders[name] = shedder


def unregister_shedder(name: str) -> None:
    with _lock:
        _shedders.pop(name, None)


def shed_memory() -> dict[str, int]:
    """Run every shedder (a failing one does not stop the others), then a full collection."""
    from apps.core.metrics import MEMORY_SHED_ITEMS

    with _lock:
        shedders = dict(_shedders)
    dropped: dict[str, int] = {}
    for name, shedder in shedders.items():
        try:
            dropped[name] = shedder()
        except Exception:
            logger.warning("memory pressure: shedding %s failed", name, exc_info=True)
            continue
        MEMORY_SHED_ITEMS.labels(what=name).inc(dropped[name])
    dropped["gc_objects"] = gc.collect()
    return dropped


class MemoryPressureWatch:
    """Sheds when memory use reaches `threshold_percent`, at most once per `cooldown` seconds."""

    def __init__(
        self,
        *,
        threshold_percent: float,
        role: str,
        cooldown: float = SHED_COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold_percent = threshold_percent
        self.role = role
        self.cooldown = cooldown
        self._clock = clock
        self._last_shed: float | None = None

    def observe(self, memory_percent: float) -> dict[str, int] | None:
        """What was shed, or None when memory use is below the threshold or the last shed was too recent."""
        from apps.core.metrics import MEMORY_SHEDS

        now = self._clock()
        if memory_percent < self.threshold_percent:
            return None
        if self._last_shed is not None and now - self._last_shed < self.cooldown:
            return None
        self._last_shed = now
        dropped = shed_memory()
        MEMORY_SHEDS.labels(role=self.role).inc()
        logger.warning(
            "memory at %.1f%% (threshold %.0f%%): shed %s",
            memory_percent,
            self.threshold_percent,
            ", ".join(f"{name} {count}" for name, count in dropped.items()),
        )
        return dropped
