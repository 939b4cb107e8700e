"""Sustained ingest: simulator -> Redis stream -> persister -> MongoDB, with a kill -9 of the persister mid-run.

For each tick rate the real processes run (`manage.py run_market`, `manage.py
persist_ticks`); halfway through, the persister is killed with SIGKILL and
restarted a second later. Afterwards: ticks generated (the simulator's count)
against ticks stored in buckets (no loss, no duplicates), and the persister's
write operations per second from its Prometheus counter (sampled every 0.1 s;
Property 7 allows 10). Baseline in the same run: the naive write path, one
insert per tick, as fast as it goes.

Storage layouts side by side (ADR 0005): the same tick stream (500 symbols,
500 ticks/s of tick time) written into a fresh database process holding the
same number of ticks, once as one document per tick (the old PriceTick layout:
tick_id unique, {symbol, -recorded_at}, {-recorded_at}; 50-tick insert_many,
i.e. 10 writes/s) and once as tick buckets (the persister's BucketAssembler +
MongoBucketStore, one read per second of tick time). The database process's
CPU time per stored tick is the figure; target: at least 5x lower.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.common import BASE_DIR, progress, setup_django, table

SYMBOLS = 500
TARGET_CPU_RATIO = 5.0
CPU_RATE = 500  # the simulator's default rate
# Item 7's baseline: the simulator (price step per tick, six stream fields a tick) and persister of main at
# BEFORE_COMMIT, measured by _cpu_per_tick (INGEST_BASELINE_TREE=<checkout>) on 2026-11-30 on this machine.
BEFORE_COMMIT = "2f80607"
BEFORE_CPU_US = {"simulator": 105.0, "persister": 37.0}
BEFORE_CPU_SOURCE = "recorded: this bench with INGEST_BASELINE_TREE, 2026-11-30 12:12 UTC"
missed: list[str] = []


def _writes_total() -> float | None:
    """The persister's write counter summed over its processes (None while a metrics file is being created)."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    try:
        multiprocess.MultiProcessCollector(registry)
        return registry.get_sample_value("trading_persister_writes_total") or 0.0
    except (struct.error, OSError):
        return None


def _max_in_one_second(samples: list[tuple[float, float]]) -> float:
    best = 0.0
    j = 0
    for i, (start, total) in enumerate(samples):
        j = max(j, i)
        while j + 1 < len(samples) and samples[j + 1][0] - start <= 1.0:
            j += 1
        best = max(best, samples[j][1] - total)
    return best


class Tracked:
    """A child process whose CPU time we keep reading while it lives."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path = BASE_DIR) -> None:
        self.popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.process = psutil.Process(self.popen.pid)
        self.cpu = 0.0

    def sample(self) -> None:
        try:
            times = self.process.cpu_times()
            self.cpu = times.user + times.system
        except psutil.NoSuchProcess:
            pass


def _stored_tick_ids() -> list[str]:
    from apps.market.models import TickBucket

    return [i for document in TickBucket.collection().find({}, {"tick_ids": 1}) for i in document["tick_ids"]]


def _tick_stream(count: int, *, first: int = 0) -> list[Any]:
    """`count` numbered ticks of SYMBOLS symbols at 500 ticks/s of tick time (2 ms apart), round robin."""
    from apps.market.ticks import Tick

    start_ms = 1_780_000_000_000
    return [
        (f"lay-{n:09d}", Tick(f"S{n % SYMBOLS:03d}", 100 + (n % 97) / 100, 100.0, n, start_ms + 2 * n))
        for n in range(first, first + count)
    ]


def _old_documents(ticks: list[Any]) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    from bson import Decimal128

    from apps.market.ticks import tick_price_decimal

    return [
        {
            "tick_id": tick_id,
            "symbol": tick.symbol,
            "price": Decimal128(tick_price_decimal(tick.price)),
            "previous_close": Decimal128(tick_price_decimal(tick.previous_close)),
            "volume": tick.volume,
            "recorded_at": datetime.fromtimestamp(tick.timestamp / 1000, tz=UTC),
        }
        for tick_id, tick in ticks
    ]


def _layout_run(layout: str, prefill: int, streamed: int) -> dict[str, Any]:
    """One layout in a database process of its own: prefill, then the stream; the server's CPU for the stream."""
    from pymongo import ASCENDING, DESCENDING, MongoClient

    from apps.market.buckets import BucketAssembler, MongoBucketStore, ticks_as_documents
    from trading import devstack

    stack = devstack.Stack()
    try:
        uri = devstack._start_secantus(stack, throwaway=True, what=f"{layout} layout", port=0, folder="")
        server = psutil.Process(stack.processes[-1][1].pid)
        client: Any = MongoClient(uri, serverSelectionTimeoutMS=300_000, connectTimeoutMS=300_000)
        collection = client.layouts["ticks"]
        if layout == "old":
            collection.create_index("tick_id", unique=True)
            collection.create_index([("symbol", ASCENDING), ("recorded_at", DESCENDING)])
            collection.create_index([("recorded_at", DESCENDING)])
        else:
            collection.create_index([("symbol", ASCENDING), ("start", ASCENDING)])
            collection.create_index([("end", ASCENDING)])
        for first in range(0, prefill, 10_000):
            ticks = _tick_stream(min(10_000, prefill - first), first=first)
            if layout == "old":
                collection.insert_many(_old_documents(ticks), ordered=False)
            else:
                MongoBucketStore(collection).insert_documents(
                    ticks_as_documents(ticks, window_ms=30_000, max_points=200)
                )
        stream = _tick_stream(streamed, first=prefill)
        cpu_before, writes, started = _cpu(server), 0, time.monotonic()
        if layout == "old":
            for first in range(0, streamed, 50):  # 500 ticks/s in 10 writes/s
                collection.insert_many(_old_documents(stream[first : first + 50]), ordered=False)
                writes += 1
        else:
            store, assembler = (
                MongoBucketStore(collection),
                BucketAssembler(window_ms=30_000, max_points=200, hold_max=25_000),
            )
            for first in range(0, streamed, 500):  # the persister reads once a second
                closed = [
                    b for n, t in enumerate(stream[first : first + 500]) for b in assembler.add(str(n).encode(), t)
                ]
                closed += assembler.due(now_ms=stream[min(streamed, first + 500) - 1][1].timestamp)
                if closed:
                    store.insert(closed)
                    writes += 1
            store.insert(assembler.close_all())
            writes += 1
        elapsed, cpu = time.monotonic() - started, _cpu(server) - cpu_before
        documents = collection.estimated_document_count()
        client.close()
        return {"layout": layout, "cpu": cpu, "elapsed": elapsed, "writes": writes, "documents": documents}
    finally:
        stack.stop()


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _layouts(quick: bool) -> tuple[str, float]:
    prefill, streamed = (20_000, 10_000) if quick else (100_000, 30_000)
    runs = []
    for layout in ("old", "buckets"):
        progress(f"ingest: {layout} layout, {prefill:,} ticks stored, then {streamed:,} streamed")
        runs.append(_layout_run(layout, prefill, streamed))
    old, new = runs
    ratio = (old["cpu"] / streamed) / max(new["cpu"] / streamed, 1e-9)
    rows = [
        [
            "one document per tick (old)" if r["layout"] == "old" else "tick buckets (new)",
            f"{prefill:,} + {streamed:,}",
            f"{r['documents']:,}",
            r["writes"],
            f"{r['cpu']:.2f}",
            f"{r['cpu'] / streamed * 1e6:,.0f}",
            f"{streamed / r['elapsed']:,.0f}",
        ]
        for r in runs
    ]
    if ratio < TARGET_CPU_RATIO:
        missed.append(f"database CPU per tick only {ratio:.1f}x lower with buckets (target {TARGET_CPU_RATIO:.0f}x)")
    text = table(
        ["layout", "ticks stored + streamed", "documents", "writes", "DB CPU s (stream)", "DB CPU us/tick", "ticks/s"],
        rows,
    )
    return text, ratio


def _entries_added(client: Any, stream: str) -> int:
    try:
        return int(client.xinfo_stream(stream)["entries-added"])
    except redis.ResponseError:  # the stream does not exist yet
        return 0


def _cpu_per_tick(env: dict[str, str], seconds: float, code: Path = BASE_DIR) -> dict[str, float]:
    """The simulator and the persister of the checkout at `code`, at 500 ticks/s on a fresh stream: each one's CPU
    per tick over `seconds` of steady state (start-up, imports and resume look-ups excluded)."""
    from apps.core.redis import redis_client

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {**env, "REDIS_KEY_PREFIX": prefix}
    stream, client = f"{prefix}:ticks", redis_client()
    manage = [sys.executable, "manage.py"]
    simulate = ["run_market", "--rate", str(CPU_RATE), "--symbols", str(SYMBOLS), "--seed", "1"]
    processes = {
        "simulator": Tracked([*manage, *simulate], env, code),
        "persister": Tracked([*manage, "persist_ticks"], env, code),
    }
    try:
        deadline = time.monotonic() + 120
        while _entries_added(client, stream) < CPU_RATE * 3:  # ticking for 3 s: settled
            if time.monotonic() > deadline or any(p.popen.poll() is not None for p in processes.values()):
                raise RuntimeError(f"the market of {code} did not start ticking")
            time.sleep(0.2)
        for process in processes.values():
            process.sample()
        before = {name: process.cpu for name, process in processes.items()}
        first = _entries_added(client, stream)
        time.sleep(seconds)
        ticks = _entries_added(client, stream) - first
        for process in processes.values():
            process.sample()
        return {"ticks": ticks, **{name: (p.cpu - before[name]) / ticks * 1e6 for name, p in processes.items()}}
    finally:
        for process in processes.values():
            process.popen.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.popen.kill()
        for stale in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(stale)


def _cpu_section(env: dict[str, str], quick: bool) -> str:
    """CPU per tick of the simulator and the persister: this checkout against the code before issue 12's item 7
    (measured in this run when INGEST_BASELINE_TREE names a checkout of it, else the recorded figures)."""
    seconds = 15.0 if quick else 40.0
    progress(f"ingest: CPU per tick, this checkout, {CPU_RATE} ticks/s for {seconds:.0f} s")
    now = _cpu_per_tick(env, seconds)
    baseline_tree = os.environ.get("INGEST_BASELINE_TREE")
    if baseline_tree:
        progress(f"ingest: CPU per tick, baseline {baseline_tree}")
        before, source = _cpu_per_tick(env, seconds, Path(baseline_tree)), f"`{baseline_tree}`, this run"
    else:
        before, source = BEFORE_CPU_US, BEFORE_CPU_SOURCE
    rows = []
    for name in ("simulator", "persister"):
        rows.append([name, f"{before[name]:.0f}", f"{now[name]:.0f}", f"{now[name] / before[name]:.2f}x"])
        if now[name] >= before[name]:
            missed.append(f"{name}: {now[name]:.0f} us CPU per tick, not below {before[name]:.0f} before")
    return "\n".join(
        [
            f"### CPU per tick: simulator and persister ({CPU_RATE} ticks/s, {SYMBOLS} symbols, "
            f"{seconds:.0f} s of steady state)",
            "",
            table(["process", "before: us CPU / tick", "now: us CPU / tick", "now / before"], rows),
            "",
            f"Before: the code at main {BEFORE_COMMIT} ({source}); now: {now['ticks']:,} ticks of this checkout. "
            "Target (issue 12, item 7): each costs less per tick than before.",
        ]
    )


def _naive_baseline(seconds: float) -> dict[str, Any]:
    """One insert per tick (what the source system did), for `seconds`."""
    from datetime import UTC, datetime

    from bson import Decimal128
    from django.db import connection

    from apps.market.selectors import simulated_symbols
    from apps.market.simulator import MarketSimulator
    from apps.market.ticks import tick_price_decimal

    simulator = MarketSimulator(simulated_symbols(SYMBOLS), seed=1)
    collection = connection.get_collection("bench_naive_ticks")  # type: ignore[attr-defined]
    cpu_before = psutil.Process().cpu_times()
    started = time.monotonic()
    writes = 0
    while time.monotonic() - started < seconds:
        tick = simulator.next_tick()
        collection.insert_one(
            {
                "tick_id": f"naive-{writes:09d}",
                "symbol": tick.symbol,
                "price": Decimal128(tick_price_decimal(tick.price)),
                "previous_close": Decimal128(tick_price_decimal(tick.previous_close)),
                "volume": tick.volume,
                "recorded_at": datetime.now(UTC),
            }
        )
        writes += 1
    elapsed = time.monotonic() - started
    cpu_after = psutil.Process().cpu_times()
    collection.drop()
    return {
        "ticks_per_second": writes / elapsed,
        "writes_per_second": writes / elapsed,
        "cpu": (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
    }


def _ingest(rate: int, seconds: float, env: dict[str, str]) -> dict[str, Any]:
    from apps.core.redis import redis_client
    from apps.market.stream import stream_key

    before = len(_stored_tick_ids())
    manage = [sys.executable, "manage.py"]
    persister = Tracked([*manage, "persist_ticks"], env)
    simulate = ["run_market", "--rate", str(rate), "--symbols", str(SYMBOLS), "--seed", "1", "--duration", str(seconds)]
    market = Tracked([*manage, *simulate], env)
    persister_cpu = 0.0
    samples: list[tuple[float, float]] = []
    killed = False
    started = time.monotonic()
    restart_at = None
    while market.popen.poll() is None or redis_client().xlen(stream_key()) > 0:
        now = time.monotonic()
        total = _writes_total()
        if total is not None:
            samples.append((now, total))
        market.sample()
        persister.sample()
        if not killed and now - started >= seconds / 2:
            persister_cpu += persister.cpu
            os.kill(persister.popen.pid, signal.SIGKILL)
            persister.popen.wait()
            killed, restart_at = True, now + 1.0
            progress(f"ingest {rate}/s: persister killed with SIGKILL at {now - started:.1f} s")
        if restart_at is not None and now >= restart_at:
            persister = Tracked([*manage, "persist_ticks"], env)
            restart_at = None
        if now - started > seconds + 300:
            raise RuntimeError("the backlog did not drain within 5 minutes")
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    output = market.popen.communicate()[0].decode()
    persister.sample()
    persister_cpu += persister.cpu
    persister.popen.send_signal(signal.SIGTERM)
    persister.popen.wait(timeout=30)
    match = re.search(r"Market stopped: (\d+) ticks", output)
    generated = int(match.group(1)) if match else -1
    stored_ids = _stored_tick_ids()
    stored = len(stored_ids) - before
    distinct = len(set(stored_ids)) - before
    writes = samples[-1][1] - samples[0][1]
    return {
        "rate": rate,
        "generated": generated,
        "stored": stored,
        "lost": generated - distinct,
        "duplicates": stored - distinct,
        "ticks_per_second": generated / seconds,
        "writes_per_second": writes / elapsed,
        "max_writes_1s": _max_in_one_second(samples),
        "drain_seconds": elapsed - seconds,
        "market_cpu": market.cpu,
        "persister_cpu": persister_cpu,
    }


def run(quick: bool) -> tuple[str, list[str]]:
    setup_django()
    from django.conf import settings
    from django.core.management import call_command

    call_command("seed_demo", "--symbols", str(SYMBOLS), "--traders", "0", verbosity=0)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"  # never touches a running market's stream
    settings.REDIS_KEY_PREFIX = prefix
    env = {**os.environ, "REDIS_KEY_PREFIX": prefix, "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    rates, seconds = ([1000], 12.0) if quick else ([500, 2000, 5000], 30.0)
    missed.clear()
    layouts, ratio = _layouts(quick)
    cpu = _cpu_section(env, quick)
    progress("ingest: naive baseline, one insert per tick")
    naive = _naive_baseline(5.0 if quick else 10.0)
    results = []
    for rate in rates:
        progress(f"ingest: {rate} ticks/s for {seconds:.0f} s")
        results.append(_ingest(rate, seconds, env))
    from apps.core.redis import key, redis_client

    client = redis_client()
    for stale in client.scan_iter(match=key("*"), count=1000):
        client.delete(stale)
    rows = [
        [
            "naive: one insert per tick",
            f"{naive['ticks_per_second']:,.0f}",
            f"{naive['ticks_per_second']:,.0f}",
            f"{naive['writes_per_second']:,.0f}",
            "-",
            "-",
            "-",
            f"{naive['cpu']:.1f} (in process)",
        ]
    ]
    for r in results:
        rows.append(
            [
                f"write-behind, {r['rate']:,} ticks/s asked, kill -9 mid-run",
                f"{r['ticks_per_second']:,.0f}",
                f"{r['stored'] / (r['generated'] / r['ticks_per_second'] + r['drain_seconds']):,.0f}",
                f"{r['writes_per_second']:.1f}",
                f"{r['max_writes_1s']:.0f}",
                f"{r['generated']:,} / {r['stored']:,} / {r['lost']} / {r['duplicates']}",
                f"{r['drain_seconds']:.1f}",
                f"market {r['market_cpu']:.1f}, persister {r['persister_cpu']:.1f}",
            ]
        )
    worst = max(r["max_writes_1s"] for r in results)
    clean = all(r["lost"] == 0 and r["duplicates"] == 0 for r in results)
    best = max(results, key=lambda r: r["ticks_per_second"])
    outcome = "and lost or doubled nothing across the kill -9" if clean else "BUT LOST OR DOUBLED TICKS"
    if not clean:
        missed.append("ticks lost or doubled across kill -9 of the persister")
    if worst > 10:
        missed.append(f"{worst:.0f} writes in one second (Property 7: 10)")
    section = "\n".join(
        [
            f"## Tick ingest ({SYMBOLS} symbols, {seconds:.0f} s per rate)",
            "",
            table(
                [
                    "path",
                    "ticks/s generated",
                    "ticks/s stored",
                    "DB writes/s",
                    "max writes in 1 s",
                    "generated / stored / lost / duplicated",
                    "drain after stop (s)",
                    "CPU s (load generator = market)",
                ],
                rows,
            ),
            "",
            f"The write-behind path carried {best['ticks_per_second']:,.0f} ticks/s with at most {worst:.0f} writes "
            f"in any second (Property 7: 10) against {naive['writes_per_second']:,.0f} writes/s for the naive path, "
            f"{outcome} (Property 36).",
            "",
            "### Database CPU per stored tick: old layout vs tick buckets (same stream, same stored size)",
            "",
            layouts,
            "",
            f"Tick buckets cost the database {ratio:.1f}x less CPU per stored tick than one document per tick "
            f"(target: at least {TARGET_CPU_RATIO:.0f}x).",
            "",
            cpu,
        ]
    )
    return section, list(missed)
