"""Orders on the full stack against the bare django-ninja endpoint, in the same run (issue 26's targets).

Every process of the Procfile runs as `make run` starts it (web: uvicorn x2, the order engine, Celery
worker and beat, the market simulator, the tick persister) on the throwaway MongoDB and Redis of `make bench`,
DEBUG off, the rate limiter counting but out of reach. The load generator is this process: plain asyncio
HTTP/1.1 on keep-alive connections, requests sent at a FIXED rate (open loop), each latency measured from its
scheduled send time, so queueing anywhere counts. Orders are market buys of one share, traders round robin.

Steps, each bounded in time, all on 127.0.0.1:
1. baseline: `GET /bench/baseline` at rising rates; its sustained rate = the highest with p95 <= 50 ms, 0 errors;
2. orders only at rising rates: sustained rate at p95 <= 50 ms and 0 errors; target >= 0.5 x the baseline's;
   at that rate: CPU per order, summed over web, engine, databases, Redis, Celery (psutil; Redis by INFO),
   and the database commands per order (SecantusDB's serverStatus opcounters, both databases);
3. mixed, 200 req/s with 10 % and with 25 % orders: reads p95 <= 50 ms, orders p95 <= 50 ms, 0 x 5xx;
4. one account: 50 concurrent buys with ample cash -> 50 filled; 45 concurrent sells of 30 held -> 30 filled,
   15 insufficient_holding; never a 503;
5. kill -9 of the engine at the sustained rate, restarted at once (as the supervisor does); clients retry a
   503 or a time-out with the same client_order_id: 0 acknowledged lost, 0 doubled, serving again <= 5 s.

The engine's tick-to-fill (resting orders filled by a crossing tick) is measured in bench/matching.py.

    python -m bench orders [--quick] [--check]
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bench.common import CpuMeter, Stack, percentile, progress, seed_symbols, setup_django, table, wait_for_quotes

TARGET_MS = 50.0
BASELINE_RATIO = 0.5
CPU_TARGET_MS = 3.0
COMMANDS_TARGET = 1.0
MIXED_RATE = 200.0
SERVING_TARGET_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 10.0
RETRY_DEADLINE_SECONDS = 30.0
KEEP_ALIVE_SECONDS = 3.0  # a connection idle longer is not reused (uvicorn closes one idle for 5 s)
ORDER_ROLES = ("proxy", "web", "engine", "database", "redis", "worker", "beat")  # what an order costs; not the market's
READ_PATHS = [
    "/api/v1/me",
    "/api/v1/portfolio",
    "/api/v1/symbols?limit=50",
    "/api/v1/leaderboard?page_size=20",
    "/api/v1/orders?limit=20",
]
RUN = os.urandom(3).hex()


# --- the load generator ---------------------------------------------------------------------------
@dataclass
class Answer:
    status: int  # 0: time-out or transport error
    code: str = ""  # the order's status ("filled") or the error's code ("insufficient_holding")
    order_id: str = ""

    def label(self) -> str:
        return f"{self.status} {self.code}".strip() if self.status else self.code


class Connection:
    """A minimal HTTP/1.1 keep-alive client: the generator must cost little next to the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0  # monotonic time of the last answer

    async def request(self, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> Answer:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next((int(x.split(":", 1)[1]) for x in lines if x.lower().startswith("content-length:")), None)
        content = await (self._chunked() if length is None else self.reader.readexactly(length))
        if any(x.lower() == "connection: close" for x in lines):
            self.close()
        self.used = time.monotonic()
        return _answer(status, content)

    async def _chunked(self) -> bytes:
        """A body sent with Transfer-Encoding: chunked (no Content-Length)."""
        assert self.reader is not None
        content = b""
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            content += (await self.reader.readexactly(size + 2))[:-2]
        await self.reader.readuntil(b"\r\n")  # the empty trailer
        return content

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _answer(status: int, content: bytes) -> Answer:
    try:
        data = json.loads(content)
    except ValueError:
        return Answer(status)
    if not isinstance(data, dict):
        return Answer(status)
    if status < 400:
        return Answer(status, str(data.get("status", "")) if "symbol" in data else "", str(data.get("id", "")))
    return Answer(status, str(data.get("code", "")))


class Pool:
    """Idle keep-alive connections, reused; a new one when none is idle (an open loop never waits for one)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Connection] = []

    async def send(self, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> Answer:
        while self.idle and time.monotonic() - self.idle[-1].used > KEEP_ALIVE_SECONDS:
            self.idle.pop().close()  # the server may be closing it: its idle time-out is 5 s
        connection = self.idle.pop() if self.idle else Connection(self.port)
        try:
            answer = await asyncio.wait_for(connection.request(method, path, token, body), REQUEST_TIMEOUT_SECONDS)
        except TimeoutError:
            connection.close()
            return Answer(0, "timeout")
        except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as error:
            connection.close()
            return Answer(0, f"error {type(error).__name__}")
        self.idle.append(connection)
        return answer

    def close(self) -> None:
        for connection in self.idle:
            connection.close()


@dataclass
class Sample:
    kind: str  # "order", "read", "baseline"
    scheduled: float  # seconds after the step started
    latency_ms: float
    answer: Answer


Request = Callable[[int], tuple[str, str, str, str, dict[str, Any] | None]]  # n -> kind, method, path, token, body


async def open_loop(port: int, rate: float, seconds: float, make: Request) -> list[Sample]:
    """Request n is sent at start + n / rate; its latency runs from then (queueing anywhere counts)."""
    loop, pool, samples = asyncio.get_running_loop(), Pool(port), []
    start = loop.time() + 0.05

    async def fire(n: int, at: float) -> None:
        kind, method, path, token, body = make(n)
        answer = await pool.send(method, path, token, body)
        samples.append(Sample(kind, at - start, (loop.time() - at) * 1000, answer))

    tasks = []
    for n in range(int(rate * seconds)):
        at = start + n / rate
        if (delay := at - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(fire(n, at)))
    await asyncio.gather(*tasks)
    pool.close()
    return samples


# --- steps and their measurements -------------------------------------------------------------------
@dataclass
class Step:
    name: str
    rate: float
    seconds: float
    samples: list[Sample]
    cpu: dict[str, float]  # CPU seconds per role during the step
    commands: int  # database commands during the step (both databases)

    def of(self, kind: str) -> list[Sample]:
        return [s for s in self.samples if s.kind == kind]

    def p95(self, kind: str) -> float:
        return percentile([s.latency_ms for s in self.of(kind) if 200 <= s.answer.status < 300], 0.95)

    def errors(self, kind: str | None = None) -> list[Sample]:
        return [s for s in self.samples if (kind is None or s.kind == kind) and not 200 <= s.answer.status < 300]

    def server_errors(self) -> list[Sample]:
        return [s for s in self.samples if s.answer.status >= 500 or s.answer.status == 0]

    def meets(self, kind: str) -> bool:
        return not self.errors() and self.p95(kind) <= TARGET_MS

    def row(self) -> list[object]:
        cells: list[object] = [self.name, f"{self.rate:.0f}", len(self.samples)]
        for kind in ("baseline", "read", "order"):
            ok = [s.latency_ms for s in self.of(kind) if 200 <= s.answer.status < 300]
            cells.append(f"{percentile(ok, 0.5):.1f} / {percentile(ok, 0.95):.1f}" if ok else "")
        statuses: dict[str, int] = {}
        for s in self.errors():
            statuses[s.answer.label()] = statuses.get(s.answer.label(), 0) + 1
        cells.append(", ".join(f"{n} x {label}" for label, n in sorted(statuses.items())) or "0")
        cpu = ", ".join(f"{r} {v / self.seconds * 100:.0f}" for r, v in self.cpu.items() if v / self.seconds >= 0.005)
        return [*cells, cpu]


class Databases:
    """Commands the databases served (serverStatus opcounters: insert, query, update, delete, getmore, command)."""

    def __init__(self) -> None:
        from pymongo import MongoClient

        uris = {os.environ.get("MONGODB_URI", ""), os.environ.get("MONGODB_TICKS_URI", "")} - {""}
        self.clients = [MongoClient(uri, directConnection=True) for uri in uris]

    def count(self) -> int:
        total = 0
        for client in self.clients:
            counters = client.admin.command("serverStatus")["opcounters"]
            total += sum(int(v) for v in counters.values()) - 1  # not our own serverStatus
        return total


def run_step(name: str, port: int, meter: CpuMeter, dbs: Databases, rate: float, seconds: float, make: Request) -> Step:
    import uvloop

    before, commands, started = meter.sample(), dbs.count(), time.monotonic()
    samples = uvloop.run(open_loop(port, rate, seconds, make))
    elapsed = time.monotonic() - started
    after, commands = meter.sample(), dbs.count() - commands
    return Step(name, rate, elapsed, samples, {role: after[role] - before[role] for role in after}, commands)


def step_up(
    name: str, kind: str, env: Env, rates: Sequence[float], seconds: float, make: Request
) -> tuple[list[Step], Step | None]:
    """Rising rates until one misses; the sustained step is the last that met p95 <= 50 ms with 0 errors."""
    steps, sustained = [], None
    for rate in rates:
        progress(f"orders: {name} at {rate:.0f}/s for {seconds:.0f} s")
        step = run_step(name, env.port, env.meter, env.dbs, rate, seconds, make)
        steps.append(step)
        progress(f"orders: {name} at {rate:.0f}/s: p95 {step.p95(kind):.1f} ms, not ok: {step.row()[6]}")
        if not step.meets(kind):
            break
        sustained = step
        time.sleep(1.0)  # the previous step's stragglers
    return steps, sustained


@dataclass
class Env:
    port: int
    stack: Stack
    meter: CpuMeter
    dbs: Databases
    tokens: list[str]
    tickers: list[str]


# --- requests -----------------------------------------------------------------------------------------
def baseline(n: int) -> tuple[str, str, str, str, dict[str, Any] | None]:
    return "baseline", "GET", "/bench/baseline", "none", None


def buy(tokens: list[str], tickers: list[str], n: int, quantity: int = 1) -> dict[str, Any]:
    return {"symbol": tickers[n * 7 % len(tickers)], "side": "buy", "quantity": quantity}


def orders(env: Env) -> Request:
    def make(n: int) -> tuple[str, str, str, str, dict[str, Any] | None]:
        return "order", "POST", "/api/v1/orders", env.tokens[n % len(env.tokens)], buy(env.tokens, env.tickers, n)

    return make


def mixed(env: Env, fraction: float) -> Request:
    """Request n is an order when n * fraction crosses an integer: exactly `fraction` of them, evenly spread."""

    def make(n: int) -> tuple[str, str, str, str, dict[str, Any] | None]:
        token = env.tokens[n % len(env.tokens)]
        if int((n + 1) * fraction) > int(n * fraction):
            return "order", "POST", "/api/v1/orders", token, buy(env.tokens, env.tickers, n)
        return "read", "GET", READ_PATHS[n % len(READ_PATHS)], token, None

    return make


def warmers(env: Env) -> Request:
    """Every read of every trader once: token contexts and accounts cached, as for active traders."""

    def make(n: int) -> tuple[str, str, str, str, dict[str, Any] | None]:
        return "read", "GET", READ_PATHS[n % len(READ_PATHS)], env.tokens[n // len(READ_PATHS) % len(env.tokens)], None

    return make


# --- one account, concurrent orders ----------------------------------------------------------------
async def _burst(port: int, token: str, body: dict[str, Any], count: int) -> list[Answer]:
    """`count` orders of one account sent at once, each on its own connection."""
    connections = [Connection(port) for _ in range(count)]
    for connection in connections:  # connected first, so the requests leave together
        connection.reader, connection.writer = await asyncio.open_connection("127.0.0.1", port)
    requests = [
        asyncio.wait_for(c.request("POST", "/api/v1/orders", token, body), REQUEST_TIMEOUT_SECONDS) for c in connections
    ]
    answers = await asyncio.gather(*requests, return_exceptions=True)
    for connection in connections:
        connection.close()
    return [a if isinstance(a, Answer) else Answer(0, type(a).__name__) for a in answers]


def _counts(answers: Sequence[Answer]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in answers:
        counts[answer.label()] = counts.get(answer.label(), 0) + 1
    return counts


def one_account(env: Env) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """50 concurrent buys with ample cash; then 30 shares bought, and 45 concurrent sells of one share."""
    import uvloop

    _, buyer = seed_traders(1, "1000000")[0]
    symbol = env.tickers[0]
    buys = uvloop.run(_burst(env.port, buyer, {"symbol": symbol, "side": "buy", "quantity": 1}, 50))
    _, seller = seed_traders(1, "1000000")[0]
    holding = uvloop.run(_burst(env.port, seller, {"symbol": symbol, "side": "buy", "quantity": 30}, 1))
    sells = uvloop.run(_burst(env.port, seller, {"symbol": symbol, "side": "sell", "quantity": 1}, 45))
    return _counts(buys), _counts(holding), _counts(sells)


# --- kill -9 of the engine ------------------------------------------------------------------------
@dataclass
class Ledger:
    """What the clients were told: per client_order_id, the acknowledged order id; when the engine served again."""

    acknowledged: dict[str, str] = field(default_factory=dict)
    unanswered: list[str] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0
    first_after_kill: float | None = None  # loop time of the first 2xx of an attempt sent after the kill
    killed_at: float | None = None


async def _until_answered(pool: Pool, token: str, body: dict[str, Any], ledger: Ledger) -> None:
    """One order, retried with the same client_order_id after a 503 (Retry-After) or a time-out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETRY_DEADLINE_SECONDS
    while loop.time() < deadline:
        sent = loop.time()
        ledger.attempts += 1
        answer = await pool.send("POST", "/api/v1/orders", token, body)
        if 200 <= answer.status < 300:
            ledger.acknowledged[body["client_order_id"]] = answer.order_id
            if ledger.killed_at is not None and sent > ledger.killed_at and ledger.first_after_kill is None:
                ledger.first_after_kill = loop.time()
            return
        if answer.status not in (0, 503):
            break  # a refusal is an answer too (none expected with ample cash)
        ledger.retries += 1
        await asyncio.sleep(1.0 if answer.status == 503 else 0.1)
    ledger.unanswered.append(body["client_order_id"])


async def _kill_run(env: Env, rate: float, seconds: float, kill_after: float) -> tuple[Ledger, list[str]]:
    loop, pool, ledger, coids = asyncio.get_running_loop(), Pool(env.port), Ledger(), []
    start, tasks = loop.time() + 0.05, []
    for n in range(int(rate * seconds)):
        at = start + n / rate
        if (delay := at - loop.time()) > 0:
            await asyncio.sleep(delay)
        if ledger.killed_at is None and at - start >= kill_after:
            os.kill(env.stack.processes["engine"].pid, signal.SIGKILL)  # the Procfile's `exec`: the engine itself
            ledger.killed_at = loop.time()
            env.stack.processes["engine"].wait()
            env.stack.spawn("engine")  # restarted at once, as the supervisor of `make run` does
        coid = f"kill-{RUN}-{n}"
        coids.append(coid)
        body = {**buy(env.tokens, env.tickers, n), "client_order_id": coid}
        tasks.append(asyncio.ensure_future(_until_answered(pool, env.tokens[n % len(env.tokens)], body, ledger)))
    await asyncio.gather(*tasks)
    pool.close()
    return ledger, coids


def engine_kill(env: Env, rate: float, seconds: float) -> dict[str, Any]:
    """Lost: acknowledged but absent (or another id) in MongoDB; doubled: a client_order_id with two orders."""
    import uvloop

    from apps.portfolio.models import Order

    ledger, coids = uvloop.run(_kill_run(env, rate, seconds, kill_after=seconds / 3))
    stored: dict[str, list[str]] = {}
    for coid, pk in Order.objects.filter(client_order_id__in=coids).values_list("client_order_id", "pk"):
        stored.setdefault(coid, []).append(str(pk))
    lost = [c for c, pk in ledger.acknowledged.items() if pk not in stored.get(c, [])]
    doubled = [c for c, pks in stored.items() if len(pks) > 1]
    assert ledger.killed_at is not None
    serving = None if ledger.first_after_kill is None else ledger.first_after_kill - ledger.killed_at
    return {
        "orders": len(coids),
        "acknowledged": len(ledger.acknowledged),
        "unanswered": len(ledger.unanswered),
        "retries": ledger.retries,
        "lost": len(lost),
        "doubled": len(doubled),
        "serving": serving,
    }


# --- data ------------------------------------------------------------------------------------------
def seed_traders(count: int, cash: str) -> list[tuple[Any, str]]:
    from apps.portfolio.services import trader_create

    tag = os.urandom(3).hex()
    return [trader_create(username=f"orders-{tag}-{n}", cash=Decimal(cash)) for n in range(count)]


# --- the report ------------------------------------------------------------------------------------
@dataclass
class Verdicts:
    lines: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def add(self, met: bool, text: str) -> None:
        self.lines.append(f"- {'met' if met else '**missed**'}: {text}")
        if not met:
            self.missed.append(text)


@dataclass
class Idle:
    cpu: dict[str, float]  # CPU seconds per second per role with no load (simulator ticks still flow)
    commands: float  # database commands per second


def idle(env: Env, seconds: float) -> Idle:
    before, commands, started = env.meter.sample(), env.dbs.count(), time.monotonic()
    time.sleep(seconds)
    elapsed, after = time.monotonic() - started, env.meter.sample()
    return Idle({r: (after[r] - before[r]) / elapsed for r in after}, (env.dbs.count() - commands) / elapsed)


def cost_rows(step: Step, quiet: Idle) -> tuple[list[list[object]], float, float, float]:
    """Per role: CPU ms per order gross and over idle; (rows, gross total, commands per order, over idle)."""
    filled = len([s for s in step.of("order") if 200 <= s.answer.status < 300]) or 1
    rows: list[list[object]] = []
    total = 0.0
    for role, seconds in sorted(step.cpu.items(), key=lambda item: -item[1]):
        gross = seconds / filled * 1000
        over = (seconds - quiet.cpu.get(role, 0.0) * step.seconds) / filled * 1000
        counted = role in ORDER_ROLES
        total += gross if counted else 0.0
        rows.append([role + ("" if counted else " (not counted)"), f"{gross:.2f}", f"{over:.2f}"])
    commands = step.commands / filled
    commands_over = (step.commands - quiet.commands * step.seconds) / filled
    return rows, total, commands, commands_over


def verdicts_of(
    base: Step | None,
    order: Step | None,
    costed: Step,
    mixes: list[Step],
    quiet: Idle,
    exact: tuple[dict[str, int], ...],
) -> tuple[Verdicts, list[list[object]]]:
    v = Verdicts()
    base_rate, order_rate = (base.rate if base else 0.0), (order.rate if order else 0.0)
    ratio = order_rate / base_rate if base_rate else 0.0
    v.add(
        ratio >= BASELINE_RATIO,
        f"orders only: sustained {order_rate:.0f}/s at p95 <= {TARGET_MS:.0f} ms with 0 errors, {ratio:.2f} x "
        f"the bare endpoint's {base_rate:.0f}/s in the same run (target >= {BASELINE_RATIO} x)",
    )
    for step in mixes:
        fives = len(step.server_errors())
        v.add(
            step.p95("read") <= TARGET_MS and step.p95("order") <= TARGET_MS and not fives,
            f"{step.name}: reads p95 {step.p95('read'):.1f} ms, orders p95 {step.p95('order'):.1f} ms, "
            f"{fives} x 5xx or time-out (target <= {TARGET_MS:.0f}, <= {TARGET_MS:.0f}, 0)",
        )
    rows, cpu, commands, commands_over = cost_rows(costed, quiet)
    v.add(
        cpu <= CPU_TARGET_MS,
        f"CPU per order at {costed.rate:.0f}/s: {cpu:.2f} ms summed over {', '.join(ORDER_ROLES)} "
        f"(target <= {CPU_TARGET_MS:.0f} ms)",
    )
    v.add(
        commands <= COMMANDS_TARGET,
        f"database commands per order at {costed.rate:.0f}/s: {commands:.2f} ({commands_over:.2f} over idle; "
        f"target <= {COMMANDS_TARGET:.0f})",
    )
    buys, holding, sells = exact
    v.add(buys == {"201 filled": 50}, f"one account, 50 concurrent buys with ample cash: {buys} (target 50 filled)")
    v.add(
        holding == {"201 filled": 1} and sells == {"201 filled": 30, "409 insufficient_holding": 15},
        f"one account holding 30 ({holding}), 45 concurrent sells: {sells} (target 30 filled, "
        "15 insufficient_holding, no 503)",
    )
    return v, rows


def kill_verdict(v: Verdicts, kill: dict[str, Any], rate: float) -> None:
    serving = kill["serving"]
    v.add(
        kill["lost"] == 0 and kill["doubled"] == 0 and kill["unanswered"] == 0,
        f"kill -9 of the engine at {rate:.0f}/s: {kill['orders']} orders, {kill['acknowledged']} acknowledged, "
        f"{kill['unanswered']} never answered in {RETRY_DEADLINE_SECONDS:.0f} s, {kill['retries']} retries, "
        f"{kill['lost']} acknowledged lost, {kill['doubled']} doubled (target 0 lost, 0 doubled)",
    )
    v.add(
        serving is not None and serving <= SERVING_TARGET_SECONDS,
        f"serving again {'never' if serving is None else f'{serving:.1f} s'} after the kill (first order "
        f"acknowledged to an attempt sent after it; target <= {SERVING_TARGET_SECONDS:.0f} s)",
    )


def measure(env: Env, quick: bool) -> tuple[list[Step], Step | None, Step | None, Step, list[Step], Idle]:
    seconds = 3.0 if quick else 8.0
    progress("orders: warm-up, every trader's token and account; a few orders")
    run_step("warm-up", env.port, env.meter, env.dbs, 150, len(env.tokens) * len(READ_PATHS) / 150, warmers(env))
    run_step("warm-up", env.port, env.meter, env.dbs, 30, 3.0, orders(env))
    progress("orders: idle, 5 s")
    quiet = idle(env, 5.0)
    base_rates = [100, 200] if quick else [100, 200, 300, 400, 500, 600, 800]
    base_steps, base = step_up("baseline", "baseline", env, base_rates, seconds, baseline)
    order_rates = [25, 50] if quick else [25, 50, 100, 150, 200, 250, 300, 400]
    order_steps, order = step_up("orders only", "order", env, order_rates, seconds, orders(env))
    mixes = []
    for fraction in (0.10, 0.25):
        progress(f"orders: mixed {MIXED_RATE:.0f}/s, {fraction:.0%} orders, {seconds + 2:.0f} s")
        name = f"mixed, {fraction:.0%} orders"
        mixes.append(run_step(name, env.port, env.meter, env.dbs, MIXED_RATE, seconds + 2, mixed(env, fraction)))
        time.sleep(1.0)
    costed = order or order_steps[0]  # nothing sustained: CPU and commands at the lowest rate, which missed
    return base_steps + order_steps, base, order, costed, mixes, quiet


def run(quick: bool) -> tuple[str, list[str]]:
    from trading.devstack import free_port

    os.environ.setdefault("REDIS_KEY_PREFIX", f"bench-orders-{RUN}")  # keys of our own on a shared Redis
    setup_django()
    traders = 100 if quick else 300
    progress(f"orders: seeding 50 symbols and {traders} traders")
    tickers = seed_symbols(50)
    tokens = [token for _, token in seed_traders(traders, "100000000")]
    port = free_port()
    stack = Stack("orders", {"BENCH_BASELINE_ENDPOINT": "1", "API_RATE_LIMIT": "1000000/m"})
    load_before = os.getloadavg()[0]
    try:
        stack.start(port)
        env = Env(port, stack, CpuMeter(stack), Databases(), tokens, tickers)
        wait_for_quotes(tickers)
        steps, base, order, costed, mixes, quiet = measure(env, quick)
        progress("orders: one account, 50 concurrent buys; 45 concurrent sells of 30 held")
        exact = one_account(env)
        kill_rate = order.rate if order else 25.0
        kill_seconds = 6.0 if quick else 15.0
        progress(f"orders: kill -9 of the engine at {kill_rate:.0f}/s for {kill_seconds:.0f} s")
        kill = engine_kill(env, kill_rate, kill_seconds)
    finally:
        stack.stop()
    verdicts, cost = verdicts_of(base, order, costed, mixes, quiet, exact)
    kill_verdict(verdicts, kill, kill_rate)
    body = report(steps + mixes, cost, verdicts, costed, order is costed, load_before, traders)
    return body, verdicts.missed


def report(
    steps: list[Step],
    cost: list[list[object]],
    verdicts: Verdicts,
    costed: Step,
    sustained: bool,
    load: float,
    traders: int,
) -> str:
    headers = ["step", "offered/s", "requests", "baseline p50 / p95 ms", "reads p50 / p95 ms", "orders p50 / p95 ms"]
    at = f"at {'the sustained' if sustained else 'the lowest step,'} {costed.rate:.0f} orders/s"
    return (
        "## Orders on the full stack (issue 26)\n\n"
        "Open loop at fixed rates (latency from the scheduled send time), plain asyncio HTTP in the bench process; "
        "every Procfile process running (HAProxy in front of uvicorn x2, the order engine, Celery worker and "
        "beat, the simulator, the "
        f"persister), DEBUG off, the rate limiter counting but out of reach, {traders} traders round robin. Orders "
        "are market buys of one share. Rates rise until one misses p95 <= 50 ms with 0 errors. CPU in percent of "
        f"one core. Machine load average {load:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores, "
        "shared with other work: both sides of each ratio see it alike).\n\n"
        + table([*headers, "not ok", "CPU % of a core"], [s.row() for s in steps])
        + f"\n\nCPU per order {at}, by process (ms; 'over idle' subtracts the same processes' CPU with no load, "
        "the simulator's ticks still flowing):\n\n"
        + table(["process", "ms per order", "over idle"], cost)
        + "\n\n"
        + "\n".join(verdicts.lines)
    )
