"""The market simulator: geometric Brownian motion per symbol, paced, lossless, with backpressure.

`MarketSimulator` makes the ticks: the same seed and symbols give the same
sequence (symbol, price, previous close, volume) whatever the wall clock.
`TickRunner` paces any tick source (the simulator, or a recording being
replayed), stamps server time, numbers each tick with a unique id and hands
batches to a sink. `RedisTickSink` writes one batch in one Redis round trip:
latest quotes, recent-history rings, live publish, then the persistence stream.
When the stream backlog passes `TICK_BACKLOG_LIMIT` the runner stops producing
until the persister has caught up (Property 9): it slows down, never drops.
"""

import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import numpy
import redis

from apps.core.backoff import backoff_delay
from apps.core.clock import now_ms as clock_now_ms
from apps.core.metrics import RING_EVICTIONS, SIMULATOR_BACKPRESSURE, TICKS_GENERATED
from apps.core.redis import redis_client
from apps.market.feed.publish import stage_publish
from apps.market.quotes import stage_quotes
from apps.market.ring import EvictionLog, ring_evictions, stage_ring
from apps.market.stream import NumberedTick, stage_append, stream_backlog, stream_key
from apps.market.ticks import Tick
from apps.market.universe import SECTOR_PROFILES

logger = logging.getLogger(__name__)

TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
# Each tick advances its symbol by one simulated minute: visible moves on a live
# dashboard while drift and volatility keep their annual meaning.
SIMULATED_SECONDS_PER_TICK = 60.0
MIN_PRICE = 0.01
LOT = 100
ROUND_BLOCK = 1024  # ticks drawn at once


@dataclass(frozen=True)
class SymbolSpec:
    ticker: str
    sector: str
    initial_price: Decimal


class MarketSimulator:
    """Ticks for `symbols` in round-robin order; reproducible from `seed` alone.

    Rounds of steps are drawn and applied as arrays (numpy: one draw of shocks and volumes for a
    block of rounds), then handed out one tick at a time: a tick costs its Tick object, not a
    Python-level random draw, exp and round.
    """

    def __init__(
        self, symbols: Sequence[SymbolSpec], *, seed: int, resume_from: Mapping[str, Tick] | None = None
    ) -> None:
        """`resume_from`: the last known tick per symbol (a restart continues there: no jump in any chart)."""
        if not symbols:
            raise ValueError("the simulator needs at least one symbol")
        self._rng = numpy.random.Generator(numpy.random.PCG64(seed))
        dt = SIMULATED_SECONDS_PER_TICK / TRADING_SECONDS_PER_YEAR
        last = [(resume_from or {}).get(spec.ticker) for spec in symbols]
        profiles = [SECTOR_PROFILES[spec.sector] for spec in symbols]
        self._tickers = [spec.ticker for spec in symbols]
        # unrounded prices, so small moves accumulate instead of rounding away
        self._prices = numpy.array(
            [t.price if t else float(s.initial_price) for t, s in zip(last, symbols, strict=True)]
        )
        self._closes = [t.previous_close if t else round(float(p), 2) for t, p in zip(last, self._prices, strict=True)]
        self._volumes = numpy.array([t.volume if t else 0 for t in last], dtype=numpy.int64)
        self._log_drift = numpy.array([(p.drift - p.volatility**2 / 2) * dt for p in profiles])  # (mu - sigma^2/2) dt
        self._shock_scale = numpy.array([p.volatility * math.sqrt(dt) for p in profiles])  # sigma sqrt(dt)
        self._block: list[Tick] = []
        self._next = 0

    def _steps(self) -> list[Tick]:
        """The next rounds of geometric Brownian motion steps, every symbol once a round, in listed order.

        Enough rounds at once for about ROUND_BLOCK ticks, so numpy's per-call cost stays small per tick
        even for a handful of symbols (the block is fixed: the same seed draws the same ticks)."""
        count = len(self._tickers)
        rounds = -(-ROUND_BLOCK // count)
        shocks = self._rng.standard_normal((rounds, count))
        prices = self._prices * numpy.exp(numpy.cumsum(self._log_drift + self._shock_scale * shocks, axis=0))
        volumes = self._volumes + LOT * numpy.cumsum(self._rng.integers(1, 51, (rounds, count)), axis=0)
        self._prices, self._volumes = prices[-1], volumes[-1]
        shown = numpy.maximum(numpy.round(prices, 2), MIN_PRICE).ravel().tolist()
        closes, tickers = self._closes * rounds, self._tickers * rounds
        return [
            Tick(symbol=ticker, price=price, previous_close=close, volume=volume, timestamp=0)
            for ticker, price, close, volume in zip(tickers, shown, closes, volumes.ravel().tolist(), strict=True)
        ]

    def next_tick(self) -> Tick:
        """The next tick (timestamp 0: the runner stamps server time when it sends it)."""
        if self._next == len(self._block):
            self._block, self._next = self._steps(), 0
        tick = self._block[self._next]
        self._next += 1
        return tick

    def paced(self, rate: float) -> Iterator[tuple[float, Tick]]:
        """Endless (due offset in seconds, tick) pairs at `rate` ticks per second."""
        sequence = 0
        while True:
            yield sequence / rate, self.next_tick()
            sequence += 1


class TickSink(Protocol):
    def write(self, numbered: Sequence[NumberedTick]) -> int:
        """Deliver one batch; return the persistence backlog after it."""

    def backlog(self) -> int: ...


class RedisTickSink:
    """One Redis round trip per batch, in order: quote, ring, publish, stream (then the backlog)."""

    def __init__(self, eviction_log: EvictionLog | None = None) -> None:
        self.eviction_log = eviction_log or EvictionLog()

    def write(self, numbered: Sequence[NumberedTick]) -> int:
        ticks = [tick for _, tick in numbered]
        pipe = redis_client().pipeline(transaction=True)  # readers never see a ring longer than its bound
        stage_quotes(pipe, ticks)
        ring_at = len(pipe)  # the quotes stage one command, and the engines' ticks one per shard
        ring_commands = stage_ring(pipe, numbered)
        stage_publish(pipe, ticks)
        stage_append(pipe, numbered)
        pipe.xlen(stream_key())
        replies = pipe.execute()
        evicted = ring_evictions(replies[ring_at]) if ring_commands else 0
        if evicted:
            RING_EVICTIONS.inc(evicted)
            self.eviction_log.record(evicted)
        return int(replies[-1])

    def backlog(self) -> int:
        return stream_backlog(redis_client())


class BackpressureGate:
    """Throttles above `limit` unstored ticks, releases below `resume_fraction` of it (hysteresis)."""

    def __init__(self, limit: int, *, resume_fraction: float = 0.9) -> None:
        self.limit = limit
        self.resume_below = int(limit * resume_fraction)
        self.throttled = False
        SIMULATOR_BACKPRESSURE.set(0)

    def observe(self, backlog: int) -> bool:
        if not self.throttled and backlog >= self.limit:
            self.throttled = True
            SIMULATOR_BACKPRESSURE.set(1)
            logger.warning("backpressure on: %s unstored ticks >= limit %s; pausing the market", backlog, self.limit)
        elif self.throttled and backlog < self.resume_below:
            self.throttled = False
            SIMULATOR_BACKPRESSURE.set(0)
            logger.info("backpressure off: backlog %s < %s; resuming", backlog, self.resume_below)
        return self.throttled


@dataclass
class RunStats:
    ticks: int = 0
    batches: int = 0
    backlog: int = 0
    throttled: bool = False
    throttled_seconds: float = 0.0
    elapsed: float = 0.0


class TickRunner:
    """Send a paced tick source to a sink in batches, never faster than due and never dropping a tick."""

    BATCH_INTERVAL = 0.05  # seconds: 20 round trips a second at any rate
    MAX_BATCH = 2000  # ticks per round trip; a late runner catches up in bounded steps
    BACKPRESSURE_POLL = 0.1
    RETRY_FIRST_SECONDS = 0.1
    RETRY_MAX_SECONDS = 5.0

    def __init__(
        self,
        sink: TickSink,
        *,
        backlog_limit: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now_ms: Callable[[], int] = clock_now_ms,
        run_id: str | None = None,
    ) -> None:
        self.sink = sink
        self.gate = BackpressureGate(backlog_limit)
        self.clock, self.sleep, self.now_ms = clock, sleep, now_ms
        self.run_id = run_id or secrets.token_hex(6)
        self.stats = RunStats()

    def tick_id(self, sequence: int) -> str:
        return f"{self.run_id}-{sequence:010d}"

    def run(
        self,
        source: Iterator[tuple[float, Tick]],
        *,
        duration: float | None = None,
        report: Callable[[RunStats], None] | None = None,
        report_every: float = 5.0,
        on_batch: Callable[[list[tuple[float, Tick]]], None] | None = None,
    ) -> RunStats:
        """Play `source` (due offsets in seconds) until it ends or `duration` seconds have passed."""
        started = self.clock()
        shift = 0.0  # time spent paused by backpressure: the schedule moves, it does not burst afterwards
        next_report = started + report_every
        pending: tuple[float, Tick] | None = next(source, None)
        while pending is not None:
            now = self.clock()
            if duration is not None and now - started >= duration:
                break
            due = started + shift + pending[0]
            if due > now:
                self.sleep(min(due - now, self.BATCH_INTERVAL))
                continue
            horizon = now - started - shift + self.BATCH_INTERVAL  # gather what is due within the window
            batch: list[tuple[float, Tick]] = []
            while pending is not None and pending[0] <= horizon and len(batch) < self.MAX_BATCH:
                batch.append(pending)
                pending = next(source, None)
            stamped = self.now_ms()
            numbered = [
                (self.tick_id(self.stats.ticks + i), Tick(t.symbol, t.price, t.previous_close, t.volume, stamped))
                for i, (_, t) in enumerate(batch)
            ]
            self._deliver(numbered)
            if on_batch is not None:
                on_batch(batch)
            shift += self._wait_while_throttled()
            if report is not None and self.clock() >= next_report:
                self.stats.elapsed = self.clock() - started
                report(self.stats)
                next_report = self.clock() + report_every
        self.stats.elapsed = self.clock() - started
        return self.stats

    def _deliver(self, numbered: list[NumberedTick]) -> None:
        """Write the batch, retrying with backoff while Redis is unreachable (the batch is kept, not dropped)."""
        attempt = 0
        while True:
            try:
                self.stats.backlog = self.sink.write(numbered)
                break
            except redis.RedisError as error:
                delay = backoff_delay(attempt, base=self.RETRY_FIRST_SECONDS, maximum=self.RETRY_MAX_SECONDS)
                logger.warning("tick batch not delivered (%s); retrying in %.1f s", error, delay)
                self.sleep(delay)
                attempt += 1
        self.stats.ticks += len(numbered)
        self.stats.batches += 1
        TICKS_GENERATED.inc(len(numbered))
        self.stats.throttled = self.gate.observe(self.stats.backlog)

    def _wait_while_throttled(self) -> float:
        if not self.gate.throttled:
            return 0.0
        paused_at = self.clock()
        while self.gate.throttled:
            self.sleep(self.BACKPRESSURE_POLL)
            try:
                self.stats.backlog = self.sink.backlog()
            except redis.RedisError as error:
                logger.warning("backlog unknown (%s); staying paused", error)
                continue
            self.stats.throttled = self.gate.observe(self.stats.backlog)
        paused = self.clock() - paused_at
        self.stats.throttled_seconds += paused
        return paused


# --- Record and replay -------------------------------------------------------------------
RECORDING_HEADER = {"recording": "trading-ticks", "version": 1}


class RecordingError(ValueError):
    """A recording that cannot be replayed; the message names the line."""


class TickRecorder:
    """Appends every delivered tick with its due offset as one JSON line (after a header line)."""

    def __init__(self, stream: "SupportsWrite") -> None:
        self._stream = stream
        self._stream.write(json.dumps(RECORDING_HEADER) + "\n")

    def __call__(self, batch: list[tuple[float, Tick]]) -> None:
        self._stream.write(
            "".join(
                json.dumps(
                    {
                        "offset": round(offset, 6),
                        "symbol": tick.symbol,
                        "price": tick.price,
                        "previous_close": tick.previous_close,
                        "volume": tick.volume,
                    },
                    separators=(",", ":"),
                )
                + "\n"
                for offset, tick in batch
            )
        )


class SupportsWrite(Protocol):
    def write(self, text: str, /) -> int: ...


def _recorded_tick(line: str, number: int) -> tuple[float, Tick]:
    try:
        entry = json.loads(line)
        offset, symbol = float(entry["offset"]), str(entry["symbol"])
        price, previous_close, volume = float(entry["price"]), float(entry["previous_close"]), int(entry["volume"])
    except (ValueError, KeyError, TypeError) as error:
        raise RecordingError(f"line {number}: not a recorded tick ({type(error).__name__}: {error})") from None
    if not (math.isfinite(offset) and offset >= 0 and price > 0 and previous_close > 0 and volume >= 0 and symbol):
        raise RecordingError(f"line {number}: offset, prices and volume must be non-negative numbers")
    return offset, Tick(symbol=symbol, price=price, previous_close=previous_close, volume=volume, timestamp=0)


def read_recording(lines: Iterable[str]) -> Iterator[tuple[float, Tick]]:
    """The (offset, tick) pairs of a recording, checked line by line (offsets must not go back)."""
    iterator = iter(lines)
    try:
        header = json.loads(next(iterator))
    except (StopIteration, ValueError):
        header = None
    if header != RECORDING_HEADER:
        raise RecordingError("line 1: not a tick recording (expected the header written by run_market --record)")
    last_offset = 0.0
    for number, line in enumerate(iterator, start=2):
        if not line.strip():
            continue
        offset, tick = _recorded_tick(line, number)
        if offset < last_offset:
            raise RecordingError(f"line {number}: offset {offset} goes back in time (previous {last_offset})")
        last_offset = offset
        yield offset, tick


def replay_schedule(recording: Iterator[tuple[float, Tick]], *, speed: float) -> Iterator[tuple[float, Tick]]:
    """The recording's ticks due at their recorded offsets divided by `speed`."""
    for offset, tick in recording:
        yield offset / speed, tick
