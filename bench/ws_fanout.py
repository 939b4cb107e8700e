"""WebSocket fan-out: the live feed of the full stack against a raw `websockets` ceiling, fairly (issue 17).

The whole Procfile runs as `make run` starts it (uvicorn x2 with the hub, Celery
worker and beat, the market simulator at its default 500 ticks/s over 500
symbols, the tick persister) on the throwaway services of `make bench`, DEBUG
off. Next to it runs the ceiling: a minimal `websockets` server in one process
on uvloop that reads ticks exactly as the hub does (`RedisSymbolSource`, one
subscription per wanted symbol), keeps the latest update per symbol, and every
100 ms on a *deadline* schedule (the hub's: the next pass is due 100 ms after
the previous one was due, not 100 ms after it ended) sends each client one frame
with its changed symbols, frames shared by every client wanting the same set.
Both serve the same ticks of the same simulator at the same time.

The same client harness measures both: client processes on uvloop (orjson when
installed), each holding many connections through a minimal WebSocket client
(asyncio protocol, no per-message library overhead), each client subscribed to
10 random symbols. Each process also reads every tick from Redis itself, so it
knows what each client should have received:
- latency: tick timestamp to receive time of every update received (a histogram);
- delivery: ticks of a client's symbols published in the window whose value, or a
  newer one of the same symbol, reached the client / ticks published (expected);
  conflated: the ones reached only through a newer value;
- staleness: for every such tick, how long until its value or a newer one arrived;
- disconnects (a client's connection closed under it), failed connections,
  frames over 1 024 bytes, updates of symbols the client did not subscribe.
5 s warm-up, then a 20 s window; each point is measured 3 times, interleaved
(raw, project, raw, project, ...), and the median run (by p99) is reported.
CPU in % of one core, per process group of the whole stack, and the server's CPU
per delivered update.

    python -m trading.devstack exec -- .venv/bin/python -m bench ws_fanout [--quick] [--check]
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import multiprocessing
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from typing import Any, cast

import psutil

from bench.common import (
    CpuMeter,
    Stack,
    progress,
    raise_open_file_limit,
    seed_symbols,
    setup_django,
    table,
    wait_for_quotes,
)

SYMBOLS = 500
SYMBOLS_PER_CLIENT = 10
CLIENT_PROCESSES = 2  # the machine has 2 cores; more processes only contend
CONNECT_CONCURRENCY = 200
CONNECT_TIMEOUT_SECONDS = 30.0
GRACE_SECONDS = 5.0  # after the window: the last ticks' values still arrive
MAX_FRAME_BYTES = 1024
HISTOGRAM_MS = 60_000  # 1 ms buckets; the last one holds everything slower
RATIO_TARGET = 1.3  # project p99 <= 1.3 x the raw ceiling's p99, same run
RATIO_CLIENTS = (2000, 5000)
DEGRADE_CLIENTS = 10_000
STALENESS_LIMIT_MS = 1000.0  # at 10 000 clients: each symbol's latest value at least once a second
BANDWIDTH_TARGET = 0.95  # Property 39 asks 80 %; the issue 95 %


def loads_function() -> tuple[Callable[[bytes], Any], str]:
    try:
        import orjson
    except ModuleNotFoundError:
        return json.loads, "json"
    return orjson.loads, "orjson"


# --- the client harness (runs in client processes) -----------------------------------------------------
class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (HISTOGRAM_MS + 1)

    def add(self, ms: float) -> None:
        self.counts[min(HISTOGRAM_MS, max(0, int(ms)))] += 1

    def merge(self, other: list[int]) -> None:
        for i, n in enumerate(other):
            if n:
                self.counts[i] += n

    def total(self) -> int:
        return sum(self.counts)

    def percentile(self, fraction: float) -> float:
        total = self.total()
        if not total:
            return float("nan")
        rank, seen = fraction * total, 0
        for ms, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return ms + 0.5
        return float(HISTOGRAM_MS)


@dataclass
class Window:
    """The measured window in wall-clock ms (tick timestamps are wall-clock ms), 0 until set."""

    start: float = 0.0
    end: float = 0.0

    def holds(self, ms: float) -> bool:
        return self.start <= ms < self.end if self.end else 0 < self.start <= ms


@dataclass
class Shared:
    """One client process's view: every tick published per symbol (from its own Redis subscription)."""

    ticks: dict[str, list[int]]
    window: Window = field(default_factory=Window)
    latency: Histogram = field(default_factory=Histogram)
    staleness: Histogram = field(default_factory=Histogram)
    received: int = 0
    frames: int = 0
    bytes: int = 0
    oversized: int = 0
    foreign: int = 0
    disconnects: int = 0
    closing: bool = False


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client-to-server frame (clients must mask)."""
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    header = bytes([0x80 | opcode]) + (
        bytes([0x80 | length]) if length < 126 else bytes([0x80 | 126]) + length.to_bytes(2, "big")
    )
    return header + key + body


class FeedClient(asyncio.Protocol):
    """One WebSocket client: handshake, one subscribe message, then parse frames and account for updates."""

    def __init__(self, shared: Shared, host: str, path: str, symbols: list[str], loads: Callable[[bytes], Any]) -> None:
        self.shared = shared
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.subscribe = json.dumps({"type": "subscribe", "symbols": symbols}).encode()
        self.symbols = {symbol: [0, 0] for symbol in symbols}  # symbol -> [newest timestamp received, in window]
        self.loads = loads
        self.buffer = bytearray()
        self.upgraded = False
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.subscribed.add_done_callback(lambda f: f.cancelled() or f.exception())  # counted as failed, not logged
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of asyncio's
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed before the subscription was acknowledged"))
        elif not self.shared.closing:
            self.shared.disconnects += 1

    def data_received(self, data: bytes) -> None:
        if self.buffer:  # the rest of a frame split across reads (rare: frames are small)
            data = bytes(self.buffer) + data
            self.buffer.clear()
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer += data
                return
            status, data = data[:end].split(b"\r\n", 1)[0], data[end + 4 :]
            assert self.transport is not None
            if b" 101 " not in status:
                self.subscribed.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            self.upgraded = True
            self.transport.write(_masked(0x1, self.subscribe))
        now = time.time_ns() / 1e6
        offset, size = 0, len(data)
        while size - offset >= 2:
            opcode, length, start = data[offset] & 0x0F, data[offset + 1] & 0x7F, offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length, start = int.from_bytes(data[offset + 2 : offset + 4], "big"), offset + 4
            elif length == 127:
                if size - offset < 10:
                    break
                length, start = int.from_bytes(data[offset + 2 : offset + 10], "big"), offset + 10
            if size - start < length:
                break
            offset = start + length
            self.frame(opcode, data[start:offset], now)
        if offset < size:
            self.buffer += data[offset:]

    def frame(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode != 0x1:
            transport = self.transport
            assert transport is not None
            if opcode == 0x9:  # ping
                transport.write(_masked(0xA, payload))
            elif opcode == 0x8:  # close
                transport.write(_masked(0x8, payload[:2]))
                transport.close()
            return
        if not self.subscribed.done():
            self.subscribed.set_result(None)  # the acknowledgement
            return
        message = self.loads(payload)
        if message.get("type") != "stock_updates":
            return
        shared = self.shared
        window = shared.window
        recording = window.start
        if recording and (not window.end or now < window.end):  # traffic of the window only, not the grace
            shared.frames += 1
            shared.bytes += len(payload)
            if len(payload) > MAX_FRAME_BYTES:
                shared.oversized += 1
        mine = self.symbols
        for update in message["updates"]:
            symbol, stamp = update["symbol"], update["timestamp"]
            state = mine.get(symbol)
            if state is None:
                shared.foreign += 1
                continue
            newest = state[0]
            if stamp <= newest:
                continue
            state[0] = stamp
            if not recording:
                continue
            # every published tick of this symbol since the newest one received is now reached (its value or
            # this newer one): how long it waited
            ticks = shared.ticks.get(symbol, ())
            staleness = shared.staleness.counts
            for published in ticks[bisect.bisect_right(ticks, newest) : bisect.bisect_right(ticks, stamp)]:
                if window.holds(published):
                    waited = int(now - published)
                    staleness[waited if 0 <= waited < HISTOGRAM_MS else (0 if waited < 0 else HISTOGRAM_MS)] += 1
            if window.holds(stamp):
                state[1] += 1
                shared.received += 1
                waited = int(now - stamp)
                shared.latency.counts[
                    waited if 0 <= waited < HISTOGRAM_MS else (0 if waited < 0 else HISTOGRAM_MS)
                ] += 1


@dataclass
class ClientResult:
    connected: int
    failed: int
    disconnects: int
    received: int
    expected: int
    reached: int  # received or superseded by a newer value that was received
    frames: int
    bytes: int
    oversized: int
    foreign: int
    latency: list[int]
    staleness: list[int]


def clients_main(
    url: str,
    channels: dict[str, str],
    redis_url: str,
    count: int,
    tickers: list[str],
    seed: int,
    window: Any,
    ready: Any,
    done: EventType,
    results: Any,
) -> None:
    import uvloop

    raise_open_file_limit()
    results.put(uvloop.run(_clients(url, channels, redis_url, count, tickers, seed, window, ready, done)))


async def _read_ticks(redis_url: str, channels: dict[str, str], shared: Shared, loads: Callable[[bytes], Any]) -> None:
    """Every tick of every symbol, straight from Redis: what the clients should receive."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    symbol_of = {name.encode(): symbol for symbol, name in channels.items()}
    await pubsub.subscribe(*symbol_of)
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message["type"] == "message":
                ticks = shared.ticks[symbol_of[message["channel"]]]
                stamp = loads(message["data"])["timestamp"]
                if not ticks or stamp >= ticks[-1]:
                    ticks.append(stamp)
                else:
                    bisect.insort(ticks, stamp)
    finally:
        await pubsub.aclose()
        await client.aclose()


async def _clients(
    url: str,
    channels: dict[str, str],
    redis_url: str,
    count: int,
    tickers: list[str],
    seed: int,
    window: Any,
    ready: Any,
    done: EventType,
) -> ClientResult:
    from urllib.parse import urlsplit

    loads, _ = loads_function()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    shared = Shared(ticks={t: [] for t in tickers})
    reader = asyncio.ensure_future(_read_ticks(redis_url, channels, shared, loads))
    rng = random.Random(seed)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[FeedClient] = []

    async def connect(symbols: list[str]) -> FeedClient:
        async with gate:
            transport, client = await asyncio.wait_for(
                loop.create_connection(
                    lambda: FeedClient(shared, parts.netloc, parts.path, symbols, loads), host, port
                ),
                CONNECT_TIMEOUT_SECONDS,
            )
            try:
                await asyncio.wait_for(asyncio.shield(client.subscribed), CONNECT_TIMEOUT_SECONDS)
            except BaseException:
                transport.close()
                raise
            return client

    await asyncio.sleep(0.3)  # the tick reader subscribed first
    outcomes = await asyncio.gather(
        *(connect(rng.sample(tickers, SYMBOLS_PER_CLIENT)) for _ in range(count)), return_exceptions=True
    )
    clients = [c for c in outcomes if isinstance(c, FeedClient)]
    ready.put(len(clients))
    while not done.is_set():
        shared.window.start, shared.window.end = window[0], window[1]
        await asyncio.sleep(0.02)
    shared.closing = True
    shared.window.start, shared.window.end = window[0], window[1]
    expected = reached = 0
    now = time.time_ns() / 1e6
    for client in clients:
        for symbol, (newest, _received) in client.symbols.items():
            ticks = shared.ticks[symbol]
            first, last = bisect.bisect_left(ticks, window[0]), bisect.bisect_left(ticks, window[1])
            covered = max(first, min(last, bisect.bisect_right(ticks, newest)))
            expected += last - first
            reached += covered - first
            for published in ticks[covered:last]:  # not reached even after the grace: waited at least this long
                shared.staleness.add(now - published)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    for client in clients:
        if client.transport is not None:
            client.transport.abort()
    return ClientResult(
        connected=len(clients),
        failed=count - len(clients),
        disconnects=shared.disconnects,
        received=shared.received,
        expected=expected,
        reached=reached,
        frames=shared.frames,
        bytes=shared.bytes,
        oversized=shared.oversized,
        foreign=shared.foreign,
        latency=shared.latency.counts,
        staleness=shared.staleness.counts,
    )


# --- the raw ceiling (its own process) -----------------------------------------------------------------
def raw_server_main(port: int, mode: str, tickers: list[str]) -> None:
    """A minimal `websockets` server: the hub's tick source, deadline schedule, frame sharing and frame limit.

    mode "selective": each client gets its own symbols; "broadcast": every client gets every symbol."""
    import uvloop

    raise_open_file_limit()
    setup_django(migrate=False)
    uvloop.run(_raw_server(port, mode, tickers))


async def _raw_server(port: int, mode: str, tickers: list[str]) -> None:
    from websockets.asyncio.server import broadcast, serve
    from websockets.exceptions import ConnectionClosed

    from apps.market.feed.frames import update_frames
    from apps.market.feed.hub import RedisSymbolSource

    source = RedisSymbolSource()
    everything = tickers if mode == "broadcast" else []
    wanted: dict[Any, set[str]] = {}
    interest: dict[str, int] = {}
    latest: dict[str, str] = {}
    changed: set[str] = set()
    commands = asyncio.Lock()

    async def handler(socket: Any) -> None:
        symbols: set[str] = set()
        wanted[socket] = symbols
        try:
            async for message in socket:
                asked = json.loads(message).get("symbols", [])
                added = [s for s in dict.fromkeys(everything or asked) if s not in symbols]
                symbols.update(added)
                first = [s for s in added if not interest.get(s)]
                for s in added:
                    interest[s] = interest.get(s, 0) + 1
                if first:
                    async with commands:
                        await source.subscribe(first)
                await socket.send(json.dumps({"type": "subscribed", "symbols": sorted(asked)}))
        except ConnectionClosed:
            pass
        finally:
            del wanted[socket]
            last = []
            for s in symbols:
                interest[s] -= 1
                if not interest[s]:
                    del interest[s]
                    last.append(s)
            if last:
                async with commands:
                    await source.unsubscribe(last)

    def deliver(symbol: str, update: str) -> None:
        if symbol in interest:
            latest[symbol] = update
            changed.add(symbol)

    async def send_loop() -> None:
        batch = 0
        next_pass = time.monotonic() + 0.1
        while True:
            await asyncio.sleep(max(0.0, next_pass - time.monotonic()))
            window = set(changed)
            changed.clear()
            if window:
                batch += 1
                stamp = time.time_ns() // 1_000_000
                encoded: dict[tuple[str, ...], list[str]] = {}
                for socket, symbols in list(wanted.items()):
                    mine = tuple(sorted(symbols & window))
                    if not mine:
                        continue
                    frames = encoded.get(mine)
                    if frames is None:
                        frames = update_frames([latest[s] for s in mine], timestamp=stamp, batch_id=batch)
                        encoded[mine] = frames
                    for frame in frames:
                        broadcast([socket], frame)
            next_pass = max(next_pass + 0.1, time.monotonic())

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, backlog=4096):
        await asyncio.gather(source.run(deliver), send_loop())


@contextlib.contextmanager
def raw_server(mode: str, tickers: list[str]) -> Iterator[tuple[psutil.Process, str]]:
    from trading.devstack import free_port, wait_for_port

    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=raw_server_main, args=(port, mode, tickers), daemon=True
    )
    process.start()
    try:
        wait_for_port(port, process=ProcessPoll(process), what="the raw server", timeout=60)
        yield psutil.Process(process.pid), f"ws://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.join(timeout=30)


class ProcessPoll:  # a multiprocessing.Process as devstack's Process protocol
    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process

    returncode: int | None = None

    def poll(self) -> int | None:
        self.returncode = self.process.exitcode
        return self.returncode


# --- one measured run --------------------------------------------------------------------------------
@dataclass
class Run:
    server: str
    clients: int
    connected: int
    failed: int
    disconnects: int
    received: int
    expected: int
    reached: int
    frames: int
    bytes: int
    oversized: int
    foreign: int
    latency: Histogram
    staleness: Histogram
    seconds: float
    cpu: dict[str, float]  # % of one core per process group
    server_mb: float
    load: float

    @property
    def p50(self) -> float:
        return self.latency.percentile(0.50)

    @property
    def p99(self) -> float:
        return self.latency.percentile(0.99)

    @property
    def delivery(self) -> float:
        return self.reached / self.expected if self.expected else float("nan")

    def server_cpu(self) -> float:
        if self.server == "raw":
            return self.cpu.get("raw server", 0.0)
        return self.cpu.get("web", 0.0) + self.cpu.get("proxy", 0.0)  # the project's sockets pass the proxy too

    def cpu_per_update_us(self) -> float:
        return self.server_cpu() / 100 * self.seconds / self.received * 1e6 if self.received else float("nan")


@dataclass
class Setup:
    tickers: list[str]
    channels: dict[str, str]
    redis_url: str
    warmup: float
    seconds: float
    meter: CpuMeter


def measure(server: str, url: str, clients: int, setup: Setup, server_processes: list[psutil.Process]) -> Run:
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    done = context.Event()
    window = context.Array("d", [0.0, 0.0], lock=False)
    shares = [
        clients // CLIENT_PROCESSES + (1 if i < clients % CLIENT_PROCESSES else 0) for i in range(CLIENT_PROCESSES)
    ]
    workers = [
        context.Process(
            target=clients_main,
            args=(url, setup.channels, setup.redis_url, share, setup.tickers, 1000 + i, window, ready, done, results),
            daemon=True,
        )
        for i, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=CONNECT_TIMEOUT_SECONDS * (1 + clients // 2000) + 60)
        time.sleep(setup.warmup)
        generators = [psutil.Process(w.pid) for w in workers]
        load_before = sum(g.cpu_times().user + g.cpu_times().system for g in generators)
        before, started = setup.meter.sample(), time.monotonic()
        window[0] = time.time_ns() / 1e6
        time.sleep(setup.seconds)
        window[1] = time.time_ns() / 1e6
        elapsed = time.monotonic() - started
        after = setup.meter.sample()
        load_after = sum(g.cpu_times().user + g.cpu_times().system for g in generators)
        memory = 0.0
        for process in server_processes:
            for member in [process, *process.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    memory += member.memory_info().rss / 2**20
        time.sleep(GRACE_SECONDS)
        done.set()
        outcome: list[ClientResult] = [results.get(timeout=120) for _ in workers]
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    cpu = {role: (after[role] - before[role]) / elapsed * 100 for role in after}
    cpu.pop("load generator", None)  # this process only sleeps; the clients are the load generator
    cpu["clients"] = (load_after - load_before) / elapsed * 100
    latency, staleness = Histogram(), Histogram()
    for result in outcome:
        latency.merge(result.latency)
        staleness.merge(result.staleness)
    return Run(
        server=server,
        clients=clients,
        connected=sum(r.connected for r in outcome),
        failed=sum(r.failed for r in outcome),
        disconnects=sum(r.disconnects for r in outcome),
        received=sum(r.received for r in outcome),
        expected=sum(r.expected for r in outcome),
        reached=sum(r.reached for r in outcome),
        frames=sum(r.frames for r in outcome),
        bytes=sum(r.bytes for r in outcome),
        oversized=sum(r.oversized for r in outcome),
        foreign=sum(r.foreign for r in outcome),
        latency=latency,
        staleness=staleness,
        seconds=elapsed,
        cpu=cpu,
        server_mb=memory,
        load=os.getloadavg()[0],
    )


def median_run(runs: list[Run]) -> Run:
    """The run with the median p99 (a real run, so its other columns belong together)."""
    ordered = sorted(runs, key=lambda r: r.p99 if r.p99 == r.p99 else float("inf"))
    return ordered[(len(ordered) - 1) // 2]


def row(run: Run, runs: list[Run], ceiling: Run | None) -> list[object]:
    ratio = f"{run.p99 / ceiling.p99:.2f}" if ceiling and ceiling.p99 else "-"
    conflated = run.reached - run.received
    return [
        "raw `websockets` (ceiling)" if run.server == "raw" else "project (full stack)",
        run.clients,
        f"{run.connected} / {run.failed}",
        run.disconnects,
        f"{run.p50:.0f}",
        f"{run.p99:.0f}",
        " / ".join(f"{r.p99:.0f}" for r in runs),
        ratio,
        f"{run.delivery:.3f}",
        f"{conflated / run.expected:.1%}" if run.expected else "-",
        f"{run.staleness.percentile(0.99):.0f}",
        f"{run.frames / run.seconds:,.0f}",
        f"{run.server_cpu():.0f} %",
        f"{run.cpu_per_update_us():.1f}",
        f"{run.server_mb:.0f}",
        f"{run.cpu['clients']:.0f} %",
        f"{run.load:.1f}",
    ]


def stack_cpu_row(run: Run) -> list[object]:
    return [
        "raw" if run.server == "raw" else "project",
        run.clients,
        ", ".join(f"{role} {percent:.0f}" for role, percent in sorted(run.cpu.items()) if percent >= 0.5),
    ]


# --- the benchmark ----------------------------------------------------------------------------------------
def run(quick: bool) -> tuple[str, list[str]]:
    from trading.devstack import free_port

    raise_open_file_limit()
    # Pub/sub channels ignore Redis database numbers: a private prefix keeps other running stacks out.
    os.environ["REDIS_KEY_PREFIX"] = f"bench-ws-{uuid.uuid4().hex[:8]}"
    setup_django()
    from django.conf import settings

    from apps.market.feed.publish import SymbolChannel

    tickers = seed_symbols(SYMBOLS)
    channels = {t: SymbolChannel.name(t) for t in tickers}
    counts = [500, 1000] if quick else [2000, 5000, DEGRADE_CLIENTS]
    repeats = 1 if quick else 3
    warmup, seconds = (2.0, 5.0) if quick else (5.0, 20.0)
    _, parser = loads_function()
    port = free_port()
    stack = Stack("ws-fanout")
    start_load = os.getloadavg()
    results: dict[tuple[str, int], list[Run]] = {}
    broadcast: Run | None = None
    try:
        progress("ws_fanout: starting the Procfile stack")
        stack.start(port)
        wait_for_quotes(tickers)
        with raw_server("selective", tickers) as (raw_process, raw_url):
            web = psutil.Process(stack.processes["web"].pid)
            meter = CpuMeter(stack, {"raw server": raw_process})
            setup = Setup(tickers, channels, settings.REDIS_URL, warmup, seconds, meter)
            servers = {"raw": (raw_url, [raw_process]), "project": (f"ws://127.0.0.1:{port}/ws/market/", [web])}
            for count in counts:
                for attempt in range(repeats):
                    for server, (url, processes) in servers.items():
                        progress(f"ws_fanout: {server}, {count} clients, run {attempt + 1} of {repeats}")
                        result = measure(server, url, count, setup, processes)
                        results.setdefault((server, count), []).append(result)
                        progress(
                            f"ws_fanout:   p50 {result.p50:.0f} ms, p99 {result.p99:.0f} ms, connected "
                            f"{result.connected}, disconnects {result.disconnects}, delivery {result.delivery:.3f}, "
                            f"server CPU {result.server_cpu():.0f} %, load {result.load:.1f}"
                        )
        baseline_clients = 50
        with raw_server("broadcast", tickers) as (process, url):
            progress(f"ws_fanout: broadcast-all, {baseline_clients} clients")
            meter = CpuMeter(stack, {"raw server": process})
            setup = Setup(tickers, channels, settings.REDIS_URL, 2.0, 5.0, meter)
            broadcast = measure("raw", url, baseline_clients, setup, [process])
    finally:
        stack.stop()
    progress("ws_fanout: channel layers")
    layer_rows = channel_layer_rates(consumers=100 if quick else 200, messages=20 if quick else 50)
    return report(results, counts, broadcast, layer_rows, quick, warmup, seconds, repeats, parser, start_load)


def report(
    results: dict[tuple[str, int], list[Run]],
    counts: list[int],
    broadcast: Run | None,
    layer_rows: list[list[object]],
    quick: bool,
    warmup: float,
    seconds: float,
    repeats: int,
    parser: str,
    start_load: tuple[float, float, float],
) -> tuple[str, list[str]]:
    chosen = {key: median_run(runs) for key, runs in results.items()}
    headers = ["server", "clients", "connected / failed", "disconnects", "p50 ms", "p99 ms", "p99 of each run",
               "p99 vs raw", "delivery", "conflated", "staleness p99 ms", "frames/s", "server CPU",
               "CPU µs / update", "server MB", "clients' CPU", "load avg"]  # fmt: skip
    rows, cpu_rows = [], []
    for count in counts:
        for server in ("raw", "project"):
            run = chosen[(server, count)]
            rows.append(row(run, results[(server, count)], chosen[("raw", count)] if server == "project" else None))
            cpu_rows.append(stack_cpu_row(run))
    missed: list[str] = []
    verdicts: list[str] = []

    def verdict(ok: bool, text: str) -> None:
        verdicts.append(f"- {'met' if ok else '**missed**'}: {text}")
        if not ok:
            missed.append(text)

    for count in counts:
        project, raw = chosen[("project", count)], chosen[("raw", count)]
        complete = project.failed == 0 and project.disconnects == 0 and project.delivery >= 0.99
        if quick or count in RATIO_CLIENTS:
            ratio = project.p99 / raw.p99 if raw.p99 else float("inf")
            verdict(
                ratio <= RATIO_TARGET and complete,
                f"{count} clients: project p99 {project.p99:.0f} ms = {ratio:.2f} x the raw ceiling's "
                f"{raw.p99:.0f} ms (target <= {RATIO_TARGET} x), every client connected and stayed "
                f"({project.failed} failed, {project.disconnects} disconnects), delivery {project.delivery:.3f}",
            )
        if count == DEGRADE_CLIENTS:
            stale = project.staleness.percentile(0.99)
            verdict(
                complete and stale <= STALENESS_LIMIT_MS,
                f"{count} clients, degrade not collapse: {project.connected} connected, {project.failed} failed, "
                f"{project.disconnects} disconnects, delivery {project.delivery:.3f} (target: all, >= 0.99), "
                f"99 % of ticks reached their clients (value or newer) within {stale:.0f} ms (target <= "
                f"{STALENESS_LIMIT_MS:.0f} ms), web processes {project.server_mb:.0f} MB, p99 {project.p99:.0f} ms",
            )
    every = [r for runs in results.values() for r in runs if r.server == "project"]
    oversized = sum(r.oversized for r in every)
    foreign = sum(r.foreign for r in every)
    verdict(oversized == 0, f"Property 23: {oversized} frames over {MAX_FRAME_BYTES} bytes")
    verdict(foreign == 0, f"Property 5: {foreign} updates of symbols a client had not subscribed")
    selective = chosen[("project", counts[0])]
    selective_per_client = selective.bytes / selective.seconds / max(1, selective.connected)
    if broadcast is not None and broadcast.bytes:
        broadcast_per_client = broadcast.bytes / broadcast.seconds / max(1, broadcast.connected)
        saving = 1 - selective_per_client / broadcast_per_client
        verdict(
            saving >= BANDWIDTH_TARGET,
            f"Property 39: {saving:.1%} less bandwidth per client than broadcast-all ({selective_per_client:,.0f} "
            f"vs {broadcast_per_client:,.0f} B/s; target >= {BANDWIDTH_TARGET:.0%})",
        )
    else:
        verdict(False, "Property 39: the broadcast-all baseline delivered nothing in this run")
    lines = [
        "## WebSocket fan-out (`bench/ws_fanout.py`, issue 17)",
        "",
        "The full Procfile stack running as `make run` starts it (HAProxy in front of uvicorn x2 serving the hub, "
        "Celery worker and "
        f"beat, the simulator at its default {SYMBOLS} symbols and 500 ticks/s, the persister), DEBUG off; next to "
        "it the raw ceiling: one `websockets` process on uvloop reading the same ticks the same way "
        "(`RedisSymbolSource`), the same 100 ms deadline schedule and shared frames. Same clients for both: "
        f"{CLIENT_PROCESSES} processes on uvloop ({parser} parsing), a minimal asyncio WebSocket client, "
        f"{SYMBOLS_PER_CLIENT} random symbols each. {warmup:.0f} s warm-up, {seconds:.0f} s window, each point "
        f"{repeats} time(s) interleaved raw/project, the median run by p99 shown (all runs' p99 listed). Latency: "
        "tick timestamp to client receive. Delivery: ticks of a client's symbols published in the window whose "
        "value or a newer one reached it, over those published; conflated: reached only through a newer value; "
        "staleness: how long each such tick waited for that. CPU in % of one core (2 cores); CPU per update: "
        "the server's (proxy and web processes, or the raw process) per update received. Load average at the start "
        f"{start_load[0]:.1f} / {start_load[1]:.1f} / {start_load[2]:.1f}, at the end {os.getloadavg()[0]:.1f} "
        "(the machine is shared with other work; both servers see it alike).",
        "",
        table(headers, rows),
        "",
        "CPU of every process group of the stack during the chosen run (% of one core):",
        "",
        table(["server measured", "clients", "CPU by process group"], cpu_rows),
        "",
        *verdicts,
        "",
        "Channel layers, one group to many consumers in one process (the shape the hub avoids):",
        "",
        table(["layer", "consumers", "messages", "deliveries/s"], layer_rows),
    ]
    return "\n".join(lines), missed


# --- channel layers ---------------------------------------------------------------------------------
def channel_layer_rates(consumers: int, messages: int) -> list[list[object]]:
    """Deliveries/s of one group_send to `consumers` channels, for each channels-redis layer."""
    from django.conf import settings

    rows: list[list[object]] = []
    for backend in ("channels_redis.pubsub.RedisPubSubChannelLayer", "channels_redis.core.RedisChannelLayer"):
        config: dict[str, Any] = {"hosts": [settings.REDIS_URL], "prefix": f"bench-{uuid.uuid4().hex[:6]}"}
        if backend.endswith("core.RedisChannelLayer"):
            config["capacity"] = messages * 2
        rate = asyncio.run(_layer_rate(backend, config, consumers, messages))
        rows.append([backend.rsplit(".", 1)[1], consumers, messages, f"{rate:,.0f}"])
    return rows


async def _layer_rate(backend: str, config: dict[str, Any], consumers: int, messages: int) -> float:
    from django.utils.module_loading import import_string

    layer = import_string(backend)(**config)
    channels = [await layer.new_channel() for _ in range(consumers)]
    for channel in channels:
        await layer.group_add("ticks", channel)

    async def drain(channel: str) -> None:
        for _ in range(messages):
            await layer.receive(channel)

    receivers = [asyncio.ensure_future(drain(c)) for c in channels]
    await asyncio.sleep(0.5)  # subscriptions in place
    started = time.perf_counter()
    for n in range(messages):
        await layer.group_send("ticks", {"type": "market.tick", "n": n, "payload": "x" * 100})
    await asyncio.wait_for(asyncio.gather(*receivers), timeout=120)
    elapsed = time.perf_counter() - started
    for channel in channels:
        await layer.group_discard("ticks", channel)
    with contextlib.suppress(Exception):
        await layer.flush()
    return consumers * messages / elapsed
