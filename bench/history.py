"""History reads on a large tick collection (Properties 1 and 4): latest-100 and time-range queries.

Stores N ticks (1M in full mode, 100k with --quick) for 500 symbols with
insert_many in big batches, fills the Redis rings with each symbol's newest
1000 points as the simulator would, then samples random symbols:

- latest 100 through `tick_history` (the API's path: the Redis ring);
- latest 100 from MongoDB alone (`stored_ticks_before`: bounded windows), i.e.
  the path when Redis is down or a page reaches past the ring;
- a keyset page from the middle of a symbol's history (`before` cursor);
- a 60-second range of one symbol (`ticks_in_window`);
and, in the same run, the baselines: the unbounded `find({symbol}).sort(-recorded_at).limit(100)`
(SecantusDB sorts every tick of the symbol) and the same 60-second range as a collection scan.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient

from bench.common import progress, setup_django, summary_ms, table

SYMBOLS = 500
RATE = 500  # ticks per second over all symbols, as the simulator's default
BATCH = 10_000


def _patient_client() -> MongoClient[dict[str, Any]]:
    """A client that waits for the embedded server however long a bulk insert or a scan keeps it busy.

    With the app's 2 s timeouts the driver's heartbeat gives up during a multi-second
    operation, cancels it and retries the write (duplicate ids) or fails the read.
    """
    from django.conf import settings

    return MongoClient(settings.MONGODB_URI, connectTimeoutMS=300_000, serverSelectionTimeoutMS=300_000)


def _store_ticks(count: int, client: MongoClient[dict[str, Any]]) -> tuple[list[str], int]:
    from bson import Decimal128
    from django.conf import settings

    from apps.market.models import PriceTick

    collection = client[settings.MONGODB_NAME][PriceTick._meta.db_table]
    symbols = [f"S{n:03d}" for n in range(SYMBOLS)]
    end_ms = int(datetime.now(UTC).timestamp() * 1000) - 5_000
    start_ms = end_ms - count * 1000 // RATE
    started = time.monotonic()
    price = Decimal128("100.00")
    for first in range(0, count, BATCH):
        collection.insert_many(
            [
                {
                    "tick_id": f"bench-{n:09d}",
                    "symbol": symbols[n % SYMBOLS],
                    "price": price,
                    "previous_close": price,
                    "volume": n,
                    "recorded_at": datetime.fromtimestamp((start_ms + n * 1000 // RATE) / 1000, tz=UTC),
                }
                for n in range(first, min(count, first + BATCH))
            ],
            ordered=False,
        )
        done = min(count, first + BATCH)
        rate = done / (time.monotonic() - started)
        progress(f"history: stored {done:,}/{count:,} ticks ({rate:,.0f}/s)")
    return symbols, start_ms


def _fill_rings(symbols: list[str]) -> None:
    """Each symbol's newest points in its Redis ring, newest first, as the simulator leaves them."""
    from django.conf import settings

    from apps.core.redis import redis_client
    from apps.market.models import PriceTick
    from apps.market.ring import ring_key
    from apps.market.selectors import tick_document_as_point

    client = redis_client()
    for symbol in symbols:
        until = datetime.now(UTC)
        documents = list(
            PriceTick.collection()
            .find({"symbol": symbol, "recorded_at": {"$gte": until - timedelta(hours=2), "$lt": until}})
            .sort("recorded_at", -1)
            .limit(settings.PRICE_RING_SIZE)
        )
        points = [{k: v for k, v in tick_document_as_point(d).items() if k != "previous_close"} for d in documents]
        encoded = [json.dumps(point, separators=(",", ":")) for point in reversed(points)]
        pipe = client.pipeline(transaction=False)
        pipe.delete(ring_key(symbol))
        if encoded:
            pipe.lpush(ring_key(symbol), *encoded)
        pipe.execute()


def _empty_tick_collection() -> None:
    """Drop and recreate (with its indexes): instant, where deleting a million documents takes minutes."""
    from django.db import connection

    from apps.market.models import PriceTick

    PriceTick.collection().drop()
    with connection.schema_editor() as editor:
        editor.create_model(PriceTick)


def _measure(samples: int, query: Callable[[random.Random], Any]) -> dict[str, float]:
    rng = random.Random(42)
    durations = []
    for _ in range(samples):
        started = time.perf_counter()
        query(rng)
        durations.append(time.perf_counter() - started)
    return summary_ms(durations)


def run(quick: bool) -> str:
    setup_django()
    from django.conf import settings

    from apps.market.models import PriceTick
    from apps.market.selectors import HistoryCursor, stored_ticks_before, tick_history, ticks_in_window

    count = 100_000 if quick else 1_000_000
    samples = 100 if quick else 300
    _empty_tick_collection()
    patient_client = _patient_client()
    patient_collection = patient_client[settings.MONGODB_NAME][PriceTick._meta.db_table]
    symbols, start_ms = _store_ticks(count, patient_client)
    per_symbol = count // SYMBOLS
    progress("history: filling the Redis rings")
    _fill_rings(symbols)
    collection = PriceTick.collection()
    span_s = count // RATE

    def random_window(rng: random.Random) -> tuple[str, datetime, datetime]:
        until = datetime.fromtimestamp(start_ms / 1000 + rng.uniform(60, span_s), tz=UTC)
        return rng.choice(symbols), until - timedelta(seconds=60), until

    def middle_cursor(rng: random.Random) -> tuple[str, HistoryCursor]:
        symbol = rng.choice(symbols)
        n = rng.randrange(per_symbol // 4, per_symbol // 2) * SYMBOLS + symbols.index(symbol)
        return symbol, HistoryCursor(start_ms + n * 1000 // RATE, f"bench-{n:09d}")

    cases: list[tuple[str, str, Callable[[random.Random], Any]]] = [
        ("latest 100 (API path: Redis ring)", "ours", lambda r: tick_history(symbol=r.choice(symbols), limit=100)),
        (
            "latest 100 from MongoDB, bounded windows",
            "ours",
            lambda r: stored_ticks_before(symbol=r.choice(symbols), before=None, limit=100),
        ),
        (
            "keyset page from mid-history (`before`)",
            "ours",
            lambda r: tick_history(symbol=(c := middle_cursor(r))[0], limit=100, before=c[1]),
        ),
        (
            "latest 100, unbounded find+sort",
            "baseline",
            lambda r: list(collection.find({"symbol": r.choice(symbols)}).sort("recorded_at", -1).limit(100)),
        ),
        (
            "60 s range of one symbol (index)",
            "ours",
            lambda r: ticks_in_window(symbol=(w := random_window(r))[0], since=w[1], until=w[2], limit=1000),
        ),
        (
            "60 s range of one symbol, collection scan",
            "baseline",
            lambda r: list(
                patient_collection.find(
                    {"symbol": (w := random_window(r))[0], "recorded_at": {"$gte": w[1], "$lt": w[2]}}
                )
                .hint([("$natural", 1)])
                .limit(1000)
            ),
        ),
    ]
    rows = []
    results: dict[str, dict[str, float]] = {}
    for name, kind, query in cases:
        progress(f"history: {name}")
        scans = "collection scan" in name  # seconds each on a million ticks: a few samples tell the story
        result = _measure(samples if kind == "ours" else (3 if scans and not quick else 10 if scans else 50), query)
        results[name] = result
        rows.append([name, kind, result["n"], result["p50"], result["p95"], result["p99"]])
    patient_client.close()
    _empty_tick_collection()
    ring, stored = results["latest 100 (API path: Redis ring)"], results["latest 100 from MongoDB, bounded windows"]
    baseline = results["latest 100, unbounded find+sort"]
    ours = [results[name]["p95"] for name, kind, _ in cases if kind == "ours"]
    verdict = "meet" if max(ours) < 50 else "miss"
    return "\n".join(
        [
            f"## History reads ({count:,} stored ticks, {SYMBOLS} symbols, {per_symbol:,} per symbol)",
            "",
            table(["query", "kind", "n", "p50 ms", "p95 ms", "p99 ms"], rows),
            "",
            f"Latest-100 p95: {ring['p95']} ms from the ring, {stored['p95']} ms from MongoDB in bounded windows, "
            f"against {baseline['p95']} ms for the unbounded sort; our paths {verdict} Property 1 (< 50 ms) "
            "and Property 4 (p95 < 100 ms).",
        ]
    )
