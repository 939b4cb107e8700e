"""Order throughput and latency over HTTP against a real server process (Property 15: API p95 < 200 ms).

The Procfile's web process (uvicorn, 2 workers) serves the app on a free 127.0.0.1
port (DEBUG off, the rate limiter counting but set out of reach). One asyncio load generator plays N traders,
each on its own keep-alive connection with its own bearer token. Each trader
alternates buying and selling one share of a random symbol (holding insert, average
cost, conditional decrements, trade and invoice in one transaction, invoice job
queued on commit), pausing 0.5-1.5 s between requests, so N traders offer about N
requests/s. The baseline, in the same run and with the same pacing, is
`GET /api/v1/me` (auth plus one read): the difference is the order path's own cost.
A last row drops the pauses to find the order path's saturation throughput.
No Celery worker runs: invoice jobs wait in Redis, as designed off the request path.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal

import psutil

from bench.common import BASE_DIR, cpu_seconds, percentile, progress, setup_django, table

SYMBOLS = 20
SERVER_LOG = BASE_DIR / "var" / "log" / "bench-orders-server.log"
# The Procfile's web process (ADR 0003): uvicorn, 2 worker processes.
SERVER = ["uvicorn", "--host", "127.0.0.1", "--workers", "2", "--lifespan", "off", "trading.asgi:application"]
BENCH_SECRET = "bench-only-secret-key-not-for-production"


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # "201", or "409 insufficient_cash" for errors


class Connection:
    """A minimal HTTP/1.1 keep-alive client: the generator must cost little next to the server."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict[str, object] | None = None) -> str:
        """The status, with the error code for a refusal ("409 no_quote")."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        assert self.reader is not None
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
        content = await self.reader.readexactly(length)
        if status < 400:
            return str(status)
        try:
            return f"{status} {json.loads(content).get('code', '')}".strip()
        except (ValueError, AttributeError):
            return str(status)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def play_trader(
    port: int, token: str, kind: str, until: float, paced: bool, outcome: Outcome, rng: random.Random
) -> None:
    connection = Connection(port, token)
    tickers = [f"B{n:03d}" for n in range(SYMBOLS)]
    await asyncio.sleep(rng.uniform(0, 1.0) if paced else 0)  # spread the start over the first second
    holding: str | None = None
    try:
        while time.monotonic() < until:
            if kind == "orders":
                symbol = holding or rng.choice(tickers)
                body = {"symbol": symbol, "side": "sell" if holding else "buy", "quantity": 1}
                started = time.perf_counter()
                status = await connection.request("POST", "/api/v1/orders", body)
                holding = None if holding else symbol
            else:
                started = time.perf_counter()
                status = await connection.request("GET", "/api/v1/me")
            outcome.latencies.append(time.perf_counter() - started)
            outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
            if paced:
                await asyncio.sleep(rng.uniform(0.5, 1.5))
    finally:
        await connection.close()


async def run_level(port: int, tokens: list[str], kind: str, seconds: float, paced: bool) -> Outcome:
    outcome = Outcome()
    until = time.monotonic() + seconds
    rng = random.Random(len(tokens))
    await asyncio.gather(
        *(play_trader(port, token, kind, until, paced, outcome, random.Random(rng.random())) for token in tokens)
    )
    return outcome


def seed(traders: int) -> list[str]:
    """Symbols with quotes and `traders` traders with ample cash; returns their API tokens."""
    from apps.core.redis import redis_client
    from apps.market.models import Symbol
    from apps.market.quotes import stage_quotes
    from apps.market.ticks import Tick
    from apps.portfolio.services import trader_create

    tickers = [f"B{n:03d}" for n in range(SYMBOLS)]
    Symbol.objects.bulk_create(
        Symbol(ticker=t, name=f"Bench {t}", sector="technology", initial_price=Decimal("50.00")) for t in tickers
    )
    pipe = redis_client().pipeline()
    stage_quotes(pipe, [Tick(t, 50.0 + n, 50.0, 0, int(time.time() * 1000)) for n, t in enumerate(tickers)])
    pipe.execute()
    run = os.urandom(3).hex()
    return [trader_create(username=f"bench-{run}-{n}", cash=Decimal("10000000"))[1] for n in range(traders)]


def start_server(port: int) -> subprocess.Popen[bytes]:
    from django.conf import settings

    from trading.devstack import wait_for_port

    env = {
        **os.environ,
        "MONGODB_NAME": settings.DATABASES["default"]["NAME"],
        "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECURE_SSL_REDIRECT": "0",  # production settings, plain HTTP on 127.0.0.1 (as behind a TLS proxy)
        "DJANGO_SECRET_KEY": BENCH_SECRET,
        "API_RATE_LIMIT": "1000000/m",  # counted on every request, never reached
        "LOG_LEVEL": "WARNING",
    }
    SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
    with SERVER_LOG.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", *SERVER, "--port", str(port)], cwd=BASE_DIR, env=env, stdout=log, stderr=log
        )
    wait_for_port(port, process=server, what="the web server", timeout=30)
    return server


def own_cpu_seconds() -> float:
    """This process only: the server is our child and must not count as load generator."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


def measure(
    port: int, server: psutil.Process, tokens: list[str], kind: str, seconds: float, paced: bool
) -> list[object]:
    server_before, generator_before, started = cpu_seconds(server), own_cpu_seconds(), time.monotonic()
    outcome = asyncio.run(run_level(port, tokens, kind, seconds, paced))
    elapsed = time.monotonic() - started
    server_cpu = (cpu_seconds(server) - server_before) / elapsed * 100
    generator_cpu = (own_cpu_seconds() - generator_before) / elapsed * 100
    ms = [s * 1000 for s in outcome.latencies]
    ok = sum(n for status, n in outcome.statuses.items() if int(status[:3]) < 400)
    errors = {status: n for status, n in outcome.statuses.items() if int(status[:3]) >= 400}
    label = "POST /api/v1/orders" if kind == "orders" else "GET /api/v1/me (baseline)"
    return [
        len(tokens),
        label + ("" if paced else ", no pauses"),
        len(ms),
        f"{ok / elapsed:.0f}",
        f"{percentile(ms, 0.50):.1f}",
        f"{percentile(ms, 0.95):.1f}",
        f"{percentile(ms, 0.99):.1f}",
        ", ".join(f"{n} x {status}" for status, n in sorted(errors.items())) or "0",
        f"{server_cpu:.0f} %",
        f"{generator_cpu:.0f} %",
    ]


def in_process(count: int) -> list[object]:
    """place_order called directly, one at a time: the service's own cost without HTTP or a server."""
    from unittest import mock

    from apps.portfolio.models import Trader
    from apps.portfolio.services import place_order, trader_create
    from apps.portfolio.tasks import generate_invoice

    trader, _ = trader_create(username=f"bench-direct-{os.urandom(3).hex()}", cash=Decimal("10000000"))
    seconds: list[float] = []
    with mock.patch.object(generate_invoice, "apply_async"):  # the broker send is not the service's cost
        for n in range(count):
            account = Trader.objects.get(pk=trader.pk)
            started = time.perf_counter()
            place_order(
                trader=account, symbol=f"B{n // 2 % SYMBOLS:03d}", side="buy" if n % 2 == 0 else "sell", quantity=1
            )
            seconds.append(time.perf_counter() - started)
    ms = [s * 1000 for s in seconds]
    return ["place_order in process", len(ms), f"{percentile(ms, 0.50):.1f}", f"{percentile(ms, 0.95):.1f}"]


def run(quick: bool) -> tuple[str, list[str]]:
    from trading.devstack import free_port

    # Keys of our own: other runs may share this Redis (quotes, rate counters, the job queue).
    os.environ.setdefault("REDIS_KEY_PREFIX", f"bench-orders-{os.urandom(3).hex()}")
    setup_django()
    levels = [20, 50] if quick else [50, 200, 500]
    seconds = 4.0 if quick else 15.0
    progress(f"orders: seeding {max(levels)} traders")
    tokens = seed(max(levels))
    port = free_port()
    server_process = start_server(port)
    rows: list[list[object]] = []
    load_before = os.getloadavg()[0]
    try:
        server = psutil.Process(server_process.pid)
        measure(port, server, tokens[:10], "orders", 1.0, paced=False)  # warm-up: imports, connections
        for level in levels:
            for kind in ("me", "orders"):
                progress(f"orders: {level} traders, {kind}, {seconds:.0f} s")
                rows.append(measure(port, server, tokens[:level], kind, seconds, paced=True))
        progress("orders: saturation, 50 traders without pauses")
        rows.append(measure(port, server, tokens[:50], "orders", seconds, paced=False))
        progress("orders: in process, one at a time")
        direct = in_process(100 if quick else 400)
    finally:
        server_process.terminate()
        server_process.wait(timeout=20)
    headers = [
        "traders",
        "request",
        "requests",
        "ok/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "server CPU",
        "load generator CPU",
    ]
    order_rows = [r for r in rows if str(r[1]).startswith("POST") and "no pauses" not in str(r[1])]
    worst_p95 = max(float(str(r[5])) for r in order_rows)
    verdict = "meets" if worst_p95 < 200 else "misses"
    missed = [f"Property 15: paced order p95 {worst_p95:.0f} ms, target under 200 ms"] if worst_p95 >= 200 else []
    section = (
        "## Orders over HTTP (Property 15)\n\n"
        "uvicorn with 2 workers (the Procfile's web process) on 127.0.0.1, embedded SecantusDB and Redis; "
        "each simulated trader keeps one connection and pauses 0.5-1.5 s between requests (about one request "
        "per trader per second); CPU is "
        f"percent of one core. Machine load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} cores; other work on the machine slows every row alike).\n\n"
        + table(headers, rows)
        + "\n\n"
        + table(["path", "orders", "p50 ms", "p95 ms"], [direct])
        + f"\n\nWorst paced order p95 {worst_p95:.0f} ms: {verdict} the 200 ms target (Property 15); the gap to the "
        "baseline row at the same load is the order transaction itself, and the last row is the order path's "
        "saturation throughput on this machine; the in-process row is the service alone (price, checks and the "
        "transaction), one order at a time."
    )
    return section, missed
