"""History reads on large stored history (Properties 1 and 4), and trading reads while ticks are stored.

Stores N ticks (1M and 5M in full mode, 100k with --quick) for 500 symbols as
tick buckets on the market database (ADR 0005), one 30-second window of the
stream at a time, fills the Redis rings with each symbol's newest 1000 points
as the simulator would, then samples random symbols:

- latest 100 through `tick_history` (the API's path: the Redis ring);
- latest 100 from MongoDB alone (`stored_ticks_before`: bounded windows, no
  density hint), i.e. the path when Redis is down; the history ends a few
  minutes before "now" (the build), so the walk crosses that gap first;
- a keyset page from the middle of a symbol's history (`before` cursor; the
  ring's density sizes the stored window);
- a 60-second range of one symbol (`ticks_in_window`).
"Today" is the one-document-per-tick layout's p95 at 1M ticks, measured by this
bench on 2026-11-25 (docs/performance.md before ADR 0005); target: no worse.

Trading reads under ingest: the simulator and the persister run (500 ticks/s)
while one thread reads a trader's portfolio and orders open-loop at 15 reads/s
(latency from the scheduled time), in alternating 10-second phases with the
persister running and paused (SIGSTOP), six of each, so load from outside the
bench falls on both alike; target: p95 running <= 1.2 x p95 paused.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pymongo import MongoClient

from bench.common import BASE_DIR, progress, setup_django, summary_ms, table

SYMBOLS = 500
RATE = 500  # ticks per second over all symbols, as the simulator's default
WINDOW_TICKS = RATE * 30  # one 30-second bucket window of the stream
TODAY_1M_P95 = {  # one document per tick, 1,000,000 ticks (docs/performance.md, run 2026-11-25 14:00 UTC)
    "latest 100 from MongoDB, bounded windows": 19.49,
    "keyset page from mid-history (`before`)": 11.57,
    "60 s range of one symbol": 3.69,
}
READS_PER_SECOND = 15
TARGET_INGEST_RATIO = 1.2
missed: list[str] = []


def _patient_collection() -> Any:
    """The bucket collection through a client that waits however long a bulk insert keeps the server busy."""
    from django.conf import settings

    from apps.market.models import TickBucket

    client: Any = MongoClient(settings.MONGODB_TICKS_URI, connectTimeoutMS=300_000, serverSelectionTimeoutMS=300_000)
    return client, client[settings.MONGODB_TICKS_NAME][TickBucket._meta.db_table]


def _tick(n: int, start_ms: int) -> Any:
    from apps.market.ticks import Tick

    return f"bench-{n:09d}", Tick(f"S{n % SYMBOLS:03d}", 100.0 + (n % 89) / 100, 100.0, n, start_ms + n * 1000 // RATE)


def _store_ticks(count: int, collection: Any) -> int:
    from apps.market.buckets import ticks_as_documents

    end_ms = int(datetime.now(UTC).timestamp() * 1000) - 5_000
    start_ms = (end_ms - count * 1000 // RATE) // 30_000 * 30_000  # windows line up with bucket windows
    started = time.monotonic()
    for first in range(0, count, WINDOW_TICKS):
        ticks = [_tick(n, start_ms) for n in range(first, min(count, first + WINDOW_TICKS))]
        collection.insert_many(ticks_as_documents(ticks, window_ms=30_000, max_points=200), ordered=False)
        done = min(count, first + WINDOW_TICKS)
        if done % (WINDOW_TICKS * 20) == 0 or done == count:
            progress(f"history: stored {done:,}/{count:,} ticks ({done / (time.monotonic() - started):,.0f}/s)")
    return start_ms


def _fill_rings(count: int, start_ms: int) -> None:
    """Each symbol's newest points in its Redis ring, newest first, as the simulator leaves them."""
    from django.conf import settings

    from apps.core.redis import redis_client
    from apps.market.ring import ring_key, ring_point

    newest = [_tick(n, start_ms) for n in range(max(0, count - settings.PRICE_RING_SIZE * SYMBOLS), count)]
    pipe = redis_client().pipeline(transaction=False)
    for symbol in {tick.symbol for _, tick in newest}:
        pipe.delete(ring_key(symbol))
    for tick_id, tick in newest:  # oldest first: LPUSH leaves the newest at the head
        pipe.lpush(ring_key(tick.symbol), json.dumps(ring_point(tick_id, tick), separators=(",", ":")))
    pipe.execute()


def _empty_buckets() -> None:
    from django.db import connections

    from apps.market.models import TickBucket

    TickBucket.collection().drop()
    with connections["market"].schema_editor() as editor:
        editor.create_model(TickBucket)


def _measure(samples: int, query: Callable[[random.Random], Any]) -> dict[str, float]:
    rng = random.Random(42)
    durations = []
    for _ in range(samples):
        started = time.perf_counter()
        query(rng)
        durations.append(time.perf_counter() - started)
    return summary_ms(durations)


def _history_at(count: int, samples: int) -> tuple[str, dict[str, dict[str, float]]]:
    from apps.market.selectors import HistoryCursor, stored_ticks_before, tick_history, ticks_in_window

    _empty_buckets()
    client, collection = _patient_collection()
    start_ms = _store_ticks(count, collection)
    client.close()
    per_symbol = count // SYMBOLS
    progress("history: filling the Redis rings")
    _fill_rings(count, start_ms)
    symbols = [f"S{n:03d}" for n in range(SYMBOLS)]
    span_s = count // RATE

    def random_window(rng: random.Random) -> tuple[str, datetime, datetime]:
        until = datetime.fromtimestamp(start_ms / 1000 + rng.uniform(60, span_s), tz=UTC)
        return rng.choice(symbols), until - timedelta(seconds=60), until

    def middle_cursor(rng: random.Random) -> tuple[str, HistoryCursor]:
        symbol = rng.choice(symbols)
        n = rng.randrange(per_symbol // 4, per_symbol // 2) * SYMBOLS + symbols.index(symbol)
        tick_id, tick = _tick(n, start_ms)
        return symbol, HistoryCursor(tick.timestamp, tick_id)

    cases: list[tuple[str, Callable[[random.Random], Any]]] = [
        ("latest 100 (API path: Redis ring)", lambda r: tick_history(symbol=r.choice(symbols), limit=100)),
        (
            "latest 100 from MongoDB, bounded windows",
            lambda r: stored_ticks_before(symbol=r.choice(symbols), before=None, limit=100),
        ),
        (
            "keyset page from mid-history (`before`)",
            lambda r: tick_history(symbol=(c := middle_cursor(r))[0], limit=100, before=c[1]),
        ),
        (
            "60 s range of one symbol",
            lambda r: ticks_in_window(symbol=(w := random_window(r))[0], since=w[1], until=w[2], limit=1000),
        ),
    ]
    results = {}
    for name, query in cases:
        progress(f"history {count:,}: {name}")
        results[name] = _measure(samples, query)
    _empty_buckets()
    return f"{count:,} ticks ({per_symbol:,} per symbol)", results


def _trading_reads(quick: bool) -> dict[str, dict[str, float]]:
    """Portfolio + order-list reads of one trader, open-loop, with the persister running vs paused."""
    from apps.portfolio.selectors import order_list, portfolio_for
    from apps.portfolio.services import trader_create

    trader, _ = trader_create(username=f"bench-{uuid.uuid4().hex[:8]}", cash=Decimal("100000"))
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "REDIS_KEY_PREFIX": prefix, "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    manage = [sys.executable, "manage.py"]
    quiet = {"cwd": BASE_DIR, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    market = subprocess.Popen([*manage, "run_market", "--rate", str(RATE), "--seed", "3"], **quiet)  # type: ignore[call-overload]
    persister = subprocess.Popen([*manage, "persist_ticks"], **quiet)  # type: ignore[call-overload]
    phase_seconds, phases = (10.0, 2) if quick else (10.0, 6)  # short phases, many times: background load hits both
    latencies: dict[str, list[float]] = {"running": [], "paused": []}
    try:
        time.sleep(5)  # both up and ticking
        for phase in ["running", "paused"] * phases:
            persister.send_signal(signal.SIGSTOP if phase == "paused" else signal.SIGCONT)
            progress(f"history: trading reads, persister {phase}, {phase_seconds:.0f} s")
            start = time.monotonic()
            for k in range(int(phase_seconds * READS_PER_SECOND)):
                due = start + k / READS_PER_SECOND
                time.sleep(max(0.0, due - time.monotonic()))
                portfolio_for(trader)
                order_list(trader=trader, limit=20)
                latencies[phase].append(time.monotonic() - due)
    finally:
        persister.send_signal(signal.SIGCONT)
        for process in (market, persister):
            process.send_signal(signal.SIGTERM)
        for process in (market, persister):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    return {phase: summary_ms(values) for phase, values in latencies.items()}


def run(quick: bool) -> tuple[str, list[str]]:
    setup_django()
    missed.clear()
    sizes, samples = ([100_000], 100) if quick else ([1_000_000, 5_000_000], 300)
    if os.environ.get("HISTORY_SIZES"):  # e.g. HISTORY_SIZES=1000000 to rerun one size
        sizes = [int(size) for size in os.environ["HISTORY_SIZES"].split(",")]
    sections = []
    for count in sizes:
        started = time.monotonic()
        title, results = _history_at(count, samples)
        rows = [
            [name, r["n"], r["p50"], r["p95"], r["p99"], TODAY_1M_P95.get(name, "-")] for name, r in results.items()
        ]
        sections += [f"### {title}, built and measured in {time.monotonic() - started:.0f} s", ""]
        sections += [table(["query", "n", "p50 ms", "p95 ms", "p99 ms", "today p95 ms (1M, one doc per tick)"], rows)]
        sections.append("")
        if count == 1_000_000:
            for name, today in TODAY_1M_P95.items():
                if results[name]["p95"] > today:
                    missed.append(f"{name}: p95 {results[name]['p95']} ms at 1M ticks, today {today} ms")
    reads = _trading_reads(quick)
    ratio = reads["running"]["p95"] / max(reads["paused"]["p95"], 1e-9)
    if ratio > TARGET_INGEST_RATIO:
        missed.append(f"trading reads p95 {ratio:.2f}x with ingest running (target {TARGET_INGEST_RATIO})")
    read_rows = [[phase, r["n"], r["p50"], r["p95"], r["p99"]] for phase, r in reads.items()]
    section = "\n".join(
        [
            f"## History reads (tick buckets, {SYMBOLS} symbols)",
            "",
            *sections,
            f"### Trading reads while ticks are stored ({READS_PER_SECOND} reads/s open-loop, {RATE} ticks/s)",
            "",
            table(["persister", "n", "p50 ms", "p95 ms", "p99 ms"], read_rows),
            "",
            f"Trading reads (portfolio + orders, default database) p95 with the persister running is {ratio:.2f}x "
            f"the p95 with it paused (target <= {TARGET_INGEST_RATIO}): tick buckets go to the market database "
            "process, so a tick write never queues a trading read behind it.",
        ]
    )
    return section, list(missed)
