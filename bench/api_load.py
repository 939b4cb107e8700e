"""The JSON API under open-loop load on the full stack, against a bare async django-ninja endpoint (issue 11).

Every process of the Procfile runs (web: uvicorn, 2 workers; Celery worker and beat;
the market simulator; the tick persister) on the throwaway MongoDB and Redis of
`make bench`, with DEBUG off and the real rate limit (100/minute per trader).
An aiohttp generator on uvloop, in this process, sends requests at Poisson
arrival times; a request's latency runs from its *scheduled* send time, so
queueing anywhere (generator, kernel, server) counts. Traders' tokens are used
round robin, each well under its rate limit.

Steps, each bounded in time, all on 127.0.0.1:
1. baseline: `GET /bench/baseline`, a bare async django-ninja endpoint served by the
   same uvicorn processes with no middleware, at stepped rates; its sustainable rate
   (the highest step with p95 <= 50 ms, no 5xx, no time-out) is the floor;
2. reads: the mix `/me`, `/portfolio`, `/symbols`, `/leaderboard`, `/orders` at stepped
   rates: target sustainable >= half the baseline's at p95 <= 50 ms;
3. orders: market buys across distinct traders at stepped rates: target >= 100/s at
   p95 <= 150 ms;
4. overload: reads at twice the sustainable rate, then back to half of it: the excess
   refused (503 + Retry-After, or 429) within 10 ms, admitted p95 <= 100 ms, nothing
   timed out, p95 back under 50 ms within 5 s after the burst;
5. exactness: 50 concurrent orders of one trader affording 10, 100 runs in a row in
   process (threads, own connections) and a few over HTTP: 10 filled, 40
   insufficient_cash, 0 busy, every time.

CPU per process in percent of one core: web workers, database, Redis (its own
INFO counters; the Redis may be shared with other work on the machine), Celery
worker and beat, simulator, persister, and this load generator.

    python -m bench api_load            # under `make bench` (services already up)
    python -m bench.api_load --check    # the same; exit 1 when a target is missed
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bench.common import (
    CpuMeter,
    Stack,
    percentile,
    progress,
    seed_symbols,
    setup_django,
    table,
    wait_for_quotes,
)

READ_TARGET_MS = 50.0
ORDER_TARGET_MS = 150.0
ORDER_TARGET_RATE = 100.0
REFUSAL_TARGET_MS = 10.0
RECOVERY_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 10.0
EXACT_RUNS = 100
EXACT_HTTP_RUNS = 5
CONCURRENT_ORDERS = 50
READ_PATHS = [
    "/api/v1/me",
    "/api/v1/portfolio",
    "/api/v1/symbols?limit=50",
    "/api/v1/leaderboard?page_size=20",
    "/api/v1/orders?limit=20",
]


# --- the load generator ---------------------------------------------------------------------------
@dataclass
class Sample:
    scheduled: float  # seconds after the step started
    latency_ms: float
    status: str  # "200", "503 overloaded", "429", "timeout", "error"


@dataclass
class StepResult:
    name: str
    rate: float
    seconds: float
    samples: list[Sample]
    cpu: dict[str, float]  # percent of one core per role

    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.status[:1] in "23"]

    def refused(self) -> list[Sample]:
        return [s for s in self.samples if s.status.startswith(("503 overloaded", "429"))]

    def failures(self) -> list[Sample]:
        """5xx other than an admission refusal, time-outs and transport errors."""
        return [s for s in self.samples if s.status[:1] not in "234" and not s.status.startswith("503 overloaded")]

    def p95(self, samples: Sequence[Sample] | None = None) -> float:
        return percentile([s.latency_ms for s in (self.ok() if samples is None else samples)], 0.95)

    def meets(self, target_ms: float) -> bool:
        return not self.failures() and not self.refused() and self.p95() <= target_ms

    def row(self) -> list[object]:
        ok = [s.latency_ms for s in self.ok()]
        statuses: dict[str, int] = {}
        for s in self.samples:
            if s.status[:1] not in "23":
                statuses[s.status] = statuses.get(s.status, 0) + 1
        cpu = ", ".join(f"{role} {percent:.0f}" for role, percent in self.cpu.items() if percent >= 0.5)
        return [
            self.name,
            f"{self.rate:.0f}",
            len(self.samples),
            f"{len(ok) / self.seconds:.0f}",
            f"{percentile(ok, 0.50):.1f}",
            f"{percentile(ok, 0.95):.1f}",
            f"{percentile(ok, 0.99):.1f}",
            ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items())) or "0",
            cpu,
        ]


Request = Callable[[int], tuple[str, str, dict[str, Any] | None, str]]  # n -> method, path, body, token


async def _send(session: Any, port: int, request: tuple[str, str, dict[str, Any] | None, str]) -> str:
    import aiohttp

    method, path, body, token = request
    try:
        async with session.request(
            method, f"http://127.0.0.1:{port}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            payload = await response.read()
            if response.status < 400:
                return str(response.status)
            if response.status == 503 and response.headers.get("Retry-After") and b"overloaded" in payload:
                return "503 overloaded"
            if response.status == 409 and b"insufficient_cash" in payload:
                return "409 insufficient_cash"
            return str(response.status)
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError as error:
        return f"error {type(error).__name__}"


async def open_loop(port: int, phases: Sequence[tuple[float, float]], make: Request, seed: int) -> list[Sample]:
    """Poisson arrivals at each (rate, seconds) phase in turn; latency from each request's scheduled time."""
    import aiohttp

    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=512)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = loop.time() + 0.05
        tasks = []

        async def fire(at: float, n: int) -> None:
            status = await _send(session, port, make(n))
            samples.append(Sample(at - start, (loop.time() - at) * 1000, status))

        at, n, phase_start = start, 0, start
        for rate, seconds in phases:
            while True:
                at += rng.expovariate(rate)
                if at >= phase_start + seconds:
                    at = phase_start + seconds
                    break
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(fire(at, n)))
                n += 1
            phase_start += seconds
        await asyncio.gather(*tasks)
    return samples


def run_step(name: str, port: int, meter: CpuMeter, phases: Sequence[tuple[float, float]], make: Request) -> StepResult:
    import uvloop

    before, started = meter.sample(), time.monotonic()
    samples = uvloop.run(open_loop(port, phases, make, seed=int(phases[0][0])))
    elapsed = time.monotonic() - started
    after = meter.sample()
    cpu = {role: (after[role] - before[role]) / elapsed * 100 for role in after}
    seconds = sum(s for _, s in phases)
    return StepResult(name, phases[0][0], seconds, samples, cpu)


# --- data -------------------------------------------------------------------------------------------
def seed_traders(count: int, cash: str) -> list[tuple[Any, str]]:
    from apps.portfolio.services import trader_create

    run = os.urandom(3).hex()
    return [trader_create(username=f"load-{run}-{n}", cash=Decimal(cash)) for n in range(count)]


def readers(tokens: list[str]) -> Request:
    def make(n: int) -> tuple[str, str, dict[str, Any] | None, str]:
        return "GET", READ_PATHS[n % len(READ_PATHS)], None, tokens[n % len(tokens)]

    return make


def warmers(tokens: list[str]) -> Request:
    """Every read of every trader once: token contexts, accounts and order lists cached, as for active traders."""

    def make(n: int) -> tuple[str, str, dict[str, Any] | None, str]:
        return "GET", READ_PATHS[n % len(READ_PATHS)], None, tokens[n // len(READ_PATHS) % len(tokens)]

    return make


def buyers(tokens: list[str], tickers: list[str]) -> Request:
    def make(n: int) -> tuple[str, str, dict[str, Any] | None, str]:
        body = {"symbol": tickers[n * 7 % len(tickers)], "side": "buy", "quantity": 1}
        return "POST", "/api/v1/orders", body, tokens[n % len(tokens)]

    return make


def baseline_request(n: int) -> tuple[str, str, dict[str, Any] | None, str]:
    return "GET", "/bench/baseline", None, "none"


def step_up(
    name: str, port: int, meter: CpuMeter, rates: Sequence[float], seconds: float, make: Request, target_ms: float
) -> tuple[list[StepResult], float]:
    """Run rising rates until one misses the target; the sustainable rate is the last that met it."""
    results, sustainable = [], 0.0
    for rate in rates:
        progress(f"api_load: {name} at {rate:.0f}/s for {seconds:.0f} s")
        result = run_step(name, port, meter, [(rate, seconds)], make)
        results.append(result)
        if not result.meets(target_ms):
            break
        sustainable = rate
        time.sleep(1.0)  # let the previous step's stragglers finish
    return results, sustainable


# --- exactness -------------------------------------------------------------------------------------
EXACT_TICKER = "XACT"
EXACT_PRICE = Decimal("10.00")


def fixed_price_symbol() -> str:
    """A symbol listed after the simulator started (so it never ticks) with a fixed quote: 10 shares exactly."""
    from apps.core.redis import redis_client
    from apps.market.models import Symbol
    from apps.market.quotes import stage_quotes
    from apps.market.ticks import Tick

    Symbol.objects.get_or_create(
        ticker=EXACT_TICKER, defaults={"name": "Exactness", "sector": "technology", "initial_price": EXACT_PRICE}
    )
    pipe = redis_client().pipeline()
    price = float(EXACT_PRICE)
    stage_quotes(pipe, [Tick(EXACT_TICKER, price, price, 0, int(time.time() * 1000))])
    pipe.execute()
    return EXACT_TICKER


def _burst_in_process(trader: Any, ticker: str) -> list[str]:
    """CONCURRENT_ORDERS threads released together, each with its own connection, each buying one share."""
    from django.db import connection

    from apps.portfolio.services import OrderRejected, place_order

    start = threading.Barrier(CONCURRENT_ORDERS)

    def order(_: int) -> str:
        start.wait()
        try:
            place_order(trader=trader, symbol=ticker, side="buy", quantity=1)
            return "filled"
        except OrderRejected as rejection:
            return rejection.code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=CONCURRENT_ORDERS) as pool:
        return list(pool.map(order, range(CONCURRENT_ORDERS)))


def exact_in_process(runs: int, ticker: str) -> tuple[int, list[str]]:
    """50 concurrent orders of one trader affording 10, `runs` times: (runs exactly right, what went wrong)."""
    from apps.portfolio.models import Invoice, Trader

    exact, problems = 0, []
    for run in range(runs):
        trader, _ = seed_traders(1, str(EXACT_PRICE * 10))[0]
        outcomes = _burst_in_process(trader, ticker)
        counts = {code: outcomes.count(code) for code in set(outcomes)}
        numbers = sorted(Invoice.objects.filter(trader=trader).values_list("number", flat=True))
        cash = Trader.objects.get(pk=trader.pk).cash
        right = counts == {"filled": 10, "insufficient_cash": 40} and numbers == list(range(1, 11)) and cash == 0
        exact += right
        if not right:
            problems.append(f"run {run}: {counts}, cash {cash}")
    return exact, problems


async def _burst_over_http(port: int, token: str, ticker: str) -> tuple[list[str], int]:
    """The orders' final answers, and how many admission refusals the client retried after Retry-After."""
    import aiohttp

    body = {"symbol": ticker, "side": "buy", "quantity": 1}
    retried = 0

    async def until_answered(session: Any, n: int) -> str:
        nonlocal retried
        request = ("POST", "/api/v1/orders", {**body, "client_order_id": f"burst-{n}"}, token)
        while (status := await _send(session, port, request)) == "503 overloaded":
            retried += 1
            await asyncio.sleep(1.0)  # the Retry-After the server sends
        return status

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)) as session:
        answers = await asyncio.gather(*(until_answered(session, n) for n in range(CONCURRENT_ORDERS)))
    return list(answers), retried


def exact_over_http(port: int, runs: int, ticker: str) -> tuple[int, list[str], int]:
    """The same burst over HTTP, spread over both server processes; a client retries an admission refusal."""
    import uvloop

    exact, problems, retries = 0, [], 0
    for run in range(runs):
        _, token = seed_traders(1, str(EXACT_PRICE * 10))[0]
        outcomes, retried = uvloop.run(_burst_over_http(port, token, ticker))
        retries += retried
        counts = {code: outcomes.count(code) for code in set(outcomes)}
        right = counts == {"201": 10, "409 insufficient_cash": 40}
        exact += right
        if not right:
            problems.append(f"HTTP run {run}: {counts}")
    return exact, problems, retries


# --- the report ------------------------------------------------------------------------------------
@dataclass
class Verdicts:
    lines: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def add(self, met: bool, text: str) -> None:
        self.lines.append(f"- {'met' if met else '**missed**'}: {text}")
        if not met:
            self.missed.append(text)


def overload_verdicts(result: StepResult, burst_seconds: float, verdicts: Verdicts) -> list[object]:
    during = [s for s in result.samples if s.scheduled < burst_seconds]
    after = [s for s in result.samples if s.scheduled >= burst_seconds + RECOVERY_SECONDS]
    admitted = [s for s in during if s.status[:1] in "23"]
    refused = [s for s in during if s.status.startswith(("503 overloaded", "429"))]
    timeouts = [s for s in result.samples if s.status == "timeout"]
    refused_p95 = percentile([s.latency_ms for s in refused], 0.95) if refused else 0.0
    admitted_p95 = percentile([s.latency_ms for s in admitted], 0.95)
    after_ok = [s for s in after if s.status[:1] in "23"]
    after_p95 = percentile([s.latency_ms for s in after_ok], 0.95)
    verdicts.add(
        bool(refused) and refused_p95 <= REFUSAL_TARGET_MS,
        f"overload: {len(refused)} of {len(during)} refused (503 + Retry-After or 429), refusal p95 "
        f"{refused_p95:.1f} ms (target <= {REFUSAL_TARGET_MS:.0f} ms)",
    )
    verdicts.add(
        admitted_p95 <= 2 * READ_TARGET_MS,
        f"overload: admitted reads p95 {admitted_p95:.1f} ms (target <= {2 * READ_TARGET_MS:.0f} ms)",
    )
    verdicts.add(not timeouts, f"overload: {len(timeouts)} time-outs (target 0)")
    failures = [s for s in after if s.status[:1] not in "23"]
    verdicts.add(
        after_p95 <= READ_TARGET_MS and not failures,
        f"recovery: from {RECOVERY_SECONDS:.0f} s after the burst, p95 {after_p95:.1f} ms and {len(failures)} "
        f"failed or refused (target <= {READ_TARGET_MS:.0f} ms, 0)",
    )
    return [
        "overload",
        f"{result.rate:.0f} then {result.rate / 4:.0f}",
        len(result.samples),
        len(admitted),
        len(refused),
        f"{refused_p95:.1f}",
        f"{admitted_p95:.1f}",
        len(timeouts),
        f"{after_p95:.1f}",
    ]


def run(quick: bool) -> tuple[str, list[str]]:
    return measure(quick=quick)


def measure(*, quick: bool) -> tuple[str, list[str]]:
    from trading.devstack import free_port

    os.environ.setdefault("REDIS_KEY_PREFIX", f"bench-api-{os.urandom(3).hex()}")
    setup_django()
    seconds = 4.0 if quick else 8.0
    traders = 300 if quick else 800
    progress(f"api_load: seeding 500 symbols and {traders} traders")
    tickers = seed_symbols(500)
    accounts = seed_traders(traders, "100000000")
    tokens = [token for _, token in accounts]
    port = free_port()
    stack = Stack("api-load", {"BENCH_BASELINE_ENDPOINT": "1", "API_RATE_LIMIT": "100/m"})
    load_before = os.getloadavg()[0]
    verdicts = Verdicts()
    try:
        stack.start(port)
        meter = CpuMeter(stack)
        wait_for_quotes(tickers)
        progress("api_load: warm-up, every trader's token and account")
        run_step("warm-up", port, meter, [(150, len(tokens) * len(READ_PATHS) / 150)], warmers(tokens))
        run_step("warm-up", port, meter, [(100, 3.0)], readers(tokens))
        run_step("warm-up", port, meter, [(30, 2.0)], buyers(tokens, tickers))
        base_rates = [50, 100, 200, 400] if quick else [50, 100, 150, 200, 300, 400, 500, 600, 800]
        base_steps, base_rate = step_up("baseline", port, meter, base_rates, seconds, baseline_request, READ_TARGET_MS)
        read_rates = [25, 50, 100] if quick else [25, 50, 75, 100, 150, 200, 250, 300, 400]
        read_steps, read_rate = step_up("reads", port, meter, read_rates, seconds, readers(tokens), READ_TARGET_MS)
        order_rates = [25, 50, 100] if quick else [25, 50, 75, 100, 150, 200]
        order_steps, order_rate = step_up(
            "orders", port, meter, order_rates, seconds, buyers(tokens, tickers), ORDER_TARGET_MS
        )
        burst = 5.0 if quick else 10.0
        overload_rate = 2 * max(read_rate, 50)
        progress(f"api_load: overload, {overload_rate:.0f}/s for {burst:.0f} s, then {overload_rate / 4:.0f}/s")
        overload = run_step(
            "overload",
            port,
            meter,
            [(overload_rate, burst), (overload_rate / 4, RECOVERY_SECONDS + burst)],
            readers(tokens),
        )
        runs = 10 if quick else EXACT_RUNS
        progress(f"api_load: exactness, {runs} runs of {CONCURRENT_ORDERS} concurrent orders in process")
        exact_ticker = fixed_price_symbol()
        exact, problems = exact_in_process(runs, exact_ticker)
        http_runs = 2 if quick else EXACT_HTTP_RUNS
        progress(f"api_load: exactness, {http_runs} runs over HTTP")
        exact_http, http_problems, http_retries = exact_over_http(port, http_runs, exact_ticker)
    finally:
        stack.stop()

    ratio = read_rate / base_rate if base_rate else 0.0
    verdicts.add(
        ratio >= 0.5,
        f"reads: sustainable {read_rate:.0f}/s at p95 <= {READ_TARGET_MS:.0f} ms, {ratio:.2f} x the bare "
        f"endpoint's {base_rate:.0f}/s (target >= 0.5 x)",
    )
    verdicts.add(
        order_rate >= ORDER_TARGET_RATE,
        f"orders: sustainable {order_rate:.0f}/s at p95 <= {ORDER_TARGET_MS:.0f} ms (target >= "
        f"{ORDER_TARGET_RATE:.0f}/s)",
    )
    overload_row = overload_verdicts(overload, burst, verdicts)
    wrong = "; ".join((problems + http_problems)[:5])
    verdicts.add(
        exact == runs and exact_http == http_runs,
        f"exactness: {exact} of {runs} in-process runs and {exact_http} of {http_runs} HTTP runs gave exactly "
        f"10 filled, 40 insufficient_cash, 0 busy, invoices 1-10, cash 0 (target all; the HTTP client retried "
        f"{http_retries} admission refusals after Retry-After){': ' + wrong if wrong else ''}",
    )
    headers = ["step", "offered/s", "requests", "ok/s", "p50 ms", "p95 ms", "p99 ms", "not ok", "CPU % of a core"]
    steps = base_steps + read_steps + order_steps + [overload]
    body = (
        "## API under load (issue 11)\n\n"
        "Open loop: Poisson arrivals, latency from the scheduled send time, aiohttp on uvloop in the bench "
        "process; the full Procfile stack running (HAProxy in front of uvicorn x2, Celery worker and beat, "
        "simulator at its default "
        "tick rate, persister), DEBUG off, the real 100/minute rate limit, "
        f"{traders} traders' tokens round robin. Reads cycle through {', '.join(p.split('?')[0] for p in READ_PATHS)}; "
        "orders are market buys of one share by distinct traders. Each rate runs until one misses its target "
        f"({seconds:.0f} s a step). Machine load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} cores, shared with other work: both sides of each ratio see it alike).\n\n"
        + table(headers, [s.row() for s in steps])
        + "\n\n"
        + table(
            [
                "overload",
                "offered/s",
                "requests",
                "admitted",
                "refused",
                "refusal p95 ms",
                "admitted p95 ms",
                "time-outs",
                f"p95 ms from {RECOVERY_SECONDS:.0f} s after",
            ],
            [overload_row],
        )
        + "\n\n"
        + "\n".join(verdicts.lines)
    )
    return body, verdicts.missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    from bench.__main__ import write_section

    body, missed = measure(quick=args.quick)
    print(f"\n{body}\n", flush=True)
    write_section("api_load", body)
    if args.check and missed:
        progress(f"api_load: {missed} target(s) missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
