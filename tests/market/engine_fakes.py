"""In-memory stand-ins for the market engine's edges: a clock, a stream with a draining persister, ticks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from apps.market.stream import NumberedTick
from apps.market.ticks import Tick


class FakeClock:
    """Monotonic time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


class DrainingStream:
    """A tick stream whose persister removes `drain_per_second` entries per second of fake time."""

    def __init__(self, clock: FakeClock, *, drain_per_second: float) -> None:
        self.clock = clock
        self.drain_per_second = drain_per_second
        self.delivered: list[NumberedTick] = []
        self.entries = 0
        self.max_entries = 0
        self._drained_at = clock()
        self._credit = 0.0

    def _drain(self) -> None:
        self._credit += (self.clock() - self._drained_at) * self.drain_per_second
        self._drained_at = self.clock()
        taken = min(self.entries, int(self._credit))
        self.entries -= taken
        self._credit -= taken

    def write(self, numbered: Sequence[NumberedTick]) -> int:
        self._drain()
        self.delivered.extend(numbered)
        self.entries += len(numbered)
        self.max_entries = max(self.max_entries, self.entries)
        return self.entries

    def backlog(self) -> int:
        self._drain()
        return self.entries


def numbered_ticks(count: int, *, symbols: Sequence[str] = ("AAA", "BBB", "CCC"), start_ms: int = 1_700_000_000_000):
    """`count` distinct ticks, one millisecond apart, cycling over `symbols`."""
    return [
        (
            f"run-{n:010d}",
            Tick(
                symbol=symbols[n % len(symbols)],
                price=10 + n / 100,
                previous_close=10.0,
                volume=n,
                timestamp=start_ms + n,
            ),
        )
        for n in range(count)
    ]


def constant_rate(rate: float) -> Iterator[tuple[float, Tick]]:
    """An endless paced source of cheap, numbered-by-volume ticks."""
    for n in itertools.count():
        yield n / rate, Tick(symbol="AAA", price=1.0, previous_close=1.0, volume=n, timestamp=0)
