"""The order engine under a full book: 10 000 resting orders over 500 symbols, ticks at 500/s.

The bench appends tick commands to the engine's stream itself (`orders:0`, the sequence orders share; a
random walk per symbol that never reaches the resting orders) and runs `manage.py run_engine --shard 0` as
`make run` does; the resting orders are in MongoDB before it starts, so it loads them into its book. Twice
a second a probe trader places a limit buy through the real order path, then a tick that crosses it is
appended; the probe's latency is from that tick's timestamp to the fill being visible in MongoDB (the trade
recorded). The baseline is the same engine with an empty book in the same run.

Targets (issue 19, now for the order engine of issue 26): the engine keeps up (its group's undelivered
backlog does not grow), adds at most 10 % of one core over the empty-book engine, and a crossing tick's
fill is recorded within 250 ms p95. Orders' own latency and cost are bench/orders.py's.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import psutil

from bench.common import BASE_DIR, percentile, progress, setup_django, table

SYMBOLS = 500
RESTING = 10_000
RATE = 500
TRADERS = 100
BASE_PRICE = 100.0
PROBES_PER_SECOND = 2
FILL_P95_TARGET_MS = 250.0
CPU_TARGET = 0.10  # of one core, over the empty-book engine


def _tickers() -> list[str]:
    return [f"M{n:03d}" for n in range(SYMBOLS)]


def _seed(resting: int, *, list_symbols: bool) -> Any:
    """Listed symbols with quotes, traders, and `resting` open buy orders far below the market (bulk-inserted
    with consistent reservations); returns the probe trader."""
    from bson import Decimal128
    from django.db import connection
    from django.utils import timezone

    from apps.market.models import Symbol
    from apps.portfolio.models import Order, Trader
    from apps.portfolio.services import trader_create

    tickers = _tickers()
    if list_symbols:
        Symbol.objects.bulk_create(
            Symbol(ticker=t, name=f"Bench {t}", sector="technology", initial_price=Decimal("100.00")) for t in tickers
        )
    _quote(tickers, BASE_PRICE)
    tag = uuid.uuid4().hex[:6]
    traders = [trader_create(username=f"matching-{tag}-{n}", cash=Decimal("10000000.00"))[0] for n in range(TRADERS)]
    rng = random.Random(7)
    held: dict[Any, Decimal] = {}
    orders = []
    for n in range(resting):
        trader = traders[n % TRADERS]
        limit = Decimal(rng.randint(4000, 6000)).scaleb(-2)  # 40-60: the walk around 100 never reaches them
        held[trader.pk] = held.get(trader.pk, Decimal(0)) + limit
        orders.append(
            Order(
                trader=trader,
                client_order_id=f"rest-{tag}-{n}",
                symbol=tickers[n % SYMBOLS],
                side="buy",
                quantity=1,
                type="limit",
                limit_price=limit,
                time_in_force="gtc",
                reserved_cash=limit,
                status="open",
                created_at=timezone.now(),
            )
        )
    Order.objects.bulk_create(orders, batch_size=2000)
    traders_collection = connection.get_collection(Trader._meta.db_table)
    for pk, amount in held.items():
        traders_collection.update_one({"_id": pk}, {"$set": {"reserved_cash": Decimal128(amount)}})
    return trader_create(username=f"matching-{tag}-probe", cash=Decimal("10000000.00"))[0]


def _quote(tickers: list[str], price: float) -> None:
    """Latest quotes as the simulator writes them (what an order is placed against)."""
    from apps.core.redis import redis_client
    from apps.market.quotes import stage_quotes
    from apps.market.ticks import Tick

    now = int(time.time() * 1000)
    pipe = redis_client().pipeline()
    stage_quotes(pipe, [Tick(t, price, price, 0, now) for t in tickers])
    pipe.execute()


class Ticks:
    """Appends ticks to the stream: a random walk per symbol within 95-105, `RATE` a second."""

    def __init__(self) -> None:
        from apps.core.redis import redis_client

        self.client = redis_client()
        self.prices = dict.fromkeys(_tickers(), BASE_PRICE)
        self.rng = random.Random(11)
        self.sent = 0

    def send(self, ticks: list[tuple[str, float]]) -> int:
        """Append (symbol, price) ticks now, as one tick command in the engine's sequence; returns their timestamp."""
        from apps.core.order_stream import stage_ticks

        now = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        self.sent += len(ticks)
        stage_ticks(pipe, ticks)
        pipe.execute()
        return now

    def walk(self, count: int) -> None:
        batch = []
        for _ in range(count):
            symbol = self.rng.choice(_tickers())
            price = min(105.0, max(95.0, self.prices[symbol] + self.rng.choice((-0.05, 0.05))))
            self.prices[symbol] = price = round(price, 2)
            batch.append((symbol, price))
        self.send(batch)


def _group(client: Any) -> dict[str, Any]:
    import redis

    from apps.core.order_stream import GROUP, stream_key

    try:
        groups = client.xinfo_groups(stream_key(0))
    except redis.ResponseError:  # no stream yet: the engine has not started reading
        return {}
    for group in groups:
        if group["name"] in (GROUP, GROUP.encode()):
            return dict(group)
    return {}


def _start_engine() -> tuple[subprocess.Popen[bytes], psutil.Process]:
    from django.conf import settings

    env = {
        **os.environ,
        "MONGODB_NAME": settings.DATABASES["default"]["NAME"],
        "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
        "LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "true",
    }
    argv = [sys.executable, "manage.py", "run_engine", "--shard", "0"]  # the Procfile's engine (one shard)
    engine = subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return engine, psutil.Process(engine.pid)


def _wait_ready(ticks: Ticks, engine: subprocess.Popen[bytes]) -> None:
    """Until the engine has loaded its book and read a tick appended after it started reading."""
    deadline = time.monotonic() + 120
    while not _group(ticks.client):
        if engine.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the engine did not start")
        time.sleep(0.05)
    ticks.send([("M000", BASE_PRICE)])
    while int(_group(ticks.client).get("pending", 0)) or int(_group(ticks.client).get("lag") or 0):
        if time.monotonic() > deadline:
            raise RuntimeError("the engine did not read its first tick")
        time.sleep(0.05)


def _probe(ticks: Ticks, trader: Any, symbol: str) -> float | None:
    """A limit buy through the real order path, then a tick crossing it: ms from the tick to the fill recorded."""
    from django.db import connection

    from apps.portfolio.models import Order
    from apps.portfolio.services import OrderTerms, place_order

    terms = OrderTerms(type="limit", limit_price=Decimal("99.00"), time_in_force="gtc")
    order = place_order(trader=trader, symbol=symbol, side="buy", quantity=1, terms=terms).order
    stamp = ticks.send([(symbol, 98.90)])
    deadline = time.monotonic() + 5
    orders = connection.get_collection(Order._meta.db_table)
    while time.monotonic() < deadline:
        # By _id alone: the ORM's two-field filter is an $and, which SecantusDB answers with a collection scan.
        if (orders.find_one({"_id": order.pk}, {"status": 1}) or {}).get("status") == "filled":
            return time.time() * 1000 - stamp
        time.sleep(0.005)
    return None


def _measure(label: str, resting: int, seconds: float, *, list_symbols: bool) -> dict[str, Any]:
    import threading

    probe_trader = _seed(resting, list_symbols=list_symbols)
    ticks = Ticks()
    engine, process = _start_engine()
    try:
        _wait_ready(ticks, engine)
        stop = threading.Event()
        lags: list[int] = []

        def stream() -> None:
            next_send = time.monotonic()
            while not stop.is_set():
                ticks.walk(RATE // 100)
                lags.append(int(_group(ticks.client).get("lag") or 0))
                next_send += 0.01
                time.sleep(max(0.0, next_send - time.monotonic()))

        before = process.cpu_times()
        started = time.monotonic()
        feeder = threading.Thread(target=stream, daemon=True)
        feeder.start()
        latencies, missed, symbols = [], 0, iter(range(10**9))
        while time.monotonic() - started < seconds:
            latency = _probe(ticks, probe_trader, _tickers()[next(symbols) % SYMBOLS])
            if latency is None:
                missed += 1
            else:
                latencies.append(latency)
            time.sleep(max(0.0, 1 / PROBES_PER_SECOND - 0.2 - (latency or 0) / 1000))
        stop.set()
        feeder.join()
        elapsed = time.monotonic() - started
        after = process.cpu_times()
        cpu = (after.user + after.system - before.user - before.system) / elapsed
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(timeout=30)
    half = len(lags) // 2
    return {
        "label": label,
        "resting": resting,
        "ticks_per_second": (ticks.sent - 1) / elapsed,
        "cpu": cpu,
        "probes": len(latencies),
        "missed": missed,
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "lag_first_half": max(lags[:half] or [0]),
        "lag_second_half": max(lags[half:] or [0]),
        "lag_end": lags[-1] if lags else 0,
    }


def run(quick: bool) -> tuple[str, list[str]]:
    setup_django()
    from django.conf import settings

    from apps.core.redis import key, redis_client

    settings.REDIS_KEY_PREFIX = f"bench-{uuid.uuid4().hex[:8]}"  # never touches a running market's stream
    seconds = 15.0 if quick else 60.0
    resting = 2_000 if quick else RESTING
    progress(f"matching: empty book, {RATE} ticks/s for {seconds:.0f} s")
    baseline = _measure("empty book (baseline)", 0, seconds, list_symbols=True)
    progress(f"matching: {resting} resting orders, {RATE} ticks/s for {seconds:.0f} s")
    full = _measure(f"{resting} resting orders", resting, seconds, list_symbols=False)
    client = redis_client()
    for stale in client.scan_iter(match=key("*"), count=1000):
        client.delete(stale)
    rows = [
        [
            r["label"],
            f"{r['ticks_per_second']:.0f}",
            f"{r['cpu'] * 100:.1f} %",
            f"{r['probes']} ({r['missed']} not filled in 5 s)",
            f"{r['p50']:.0f} ms",
            f"{r['p95']:.0f} ms",
            f"{r['lag_first_half']} / {r['lag_second_half']} / {r['lag_end']}",
        ]
        for r in (baseline, full)
    ]
    added = full["cpu"] - baseline["cpu"]
    misses = []
    if added > CPU_TARGET:
        misses.append(f"the book adds {added * 100:.1f} % of a core (target <= {CPU_TARGET * 100:.0f} %)")
    if not full["p95"] <= FILL_P95_TARGET_MS or full["missed"]:
        misses.append(f"fill p95 {full['p95']:.0f} ms, {full['missed']} probes unfilled (target <= 250 ms, none)")
    if full["lag_second_half"] > max(RATE, 2 * full["lag_first_half"]):
        misses.append(f"the engine fell behind: backlog {full['lag_second_half']} ticks in the second half")
    body = f"""## Matching (issue 19)

`bench/matching.py`: {SYMBOLS} symbols, ticks appended at {RATE}/s as tick commands on the engine's stream,
`manage.py run_engine --shard 0` as `make run` starts it; twice a second a probe limit buy is placed through
the real order path and a tick crossing it appended.
Fill latency: from that tick's timestamp until the filled order (trade, cash, invoice: one transaction) is
visible in MongoDB. Backlog: the engine group's undelivered commands (one per 10 ms of
ticks; max in the first half / second half / at the end). CPU: the engine process, in percent of one core.

{table(["book", "ticks/s", "engine CPU", "probes", "fill p50", "fill p95", "backlog (commands)"], rows)}

The book adds {added * 100:.1f} % of one core (target <= {CPU_TARGET * 100:.0f} %); crossing tick to fill recorded
p95 {full["p95"]:.0f} ms (target <= {FILL_P95_TARGET_MS:.0f} ms).
"""
    return body, misses
