"""A tick source the matcher reads in tests: ticks queued by the test, acknowledgements recorded."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal

from apps.core.redis import redis_client
from apps.portfolio.matching import Matcher

_ids = itertools.count(1)


class QueuedTicks:
    def __init__(self) -> None:
        self.queued: list[tuple[bytes, tuple[str, int, int] | None]] = []
        self.pending: list[tuple[bytes, tuple[str, int, int] | None]] = []  # read, not acknowledged
        self.acknowledged: list[bytes] = []

    def tick(self, symbol: str, price: Decimal | str, timestamp: int = 0) -> None:
        self.queued.append((f"{next(_ids)}-0".encode(), (symbol, int(Decimal(price) * 100), timestamp)))

    def read(self, count: int) -> list[tuple[bytes, tuple[str, int, int] | None]]:
        taken, self.queued = self.queued[:count], self.queued[count:]
        self.pending += taken
        return taken

    def acknowledge(self, entry_ids: Sequence[bytes]) -> None:
        self.acknowledged += entry_ids
        self.pending = [entry for entry in self.pending if entry[0] not in set(entry_ids)]

    def crash(self) -> None:
        """What a restarted consumer is given again: every entry it read and never acknowledged."""
        self.queued, self.pending = self.pending + self.queued, []


def matcher_on(ticks: QueuedTicks, **options: object) -> Matcher:
    matcher = Matcher(ticks, client=redis_client(), expiry_seconds=3600, resync_seconds=3600, **options)  # type: ignore[arg-type]
    matcher.load()
    return matcher
