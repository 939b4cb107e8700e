"""WebSocket fan-out: the live feed under many clients, against a broadcast-all baseline and a raw ceiling.

Scenario (issue 4): 500 symbols, 500 ticks/s published with `stage_publish` by a
publisher process, each client subscribed to 10 random symbols, clients in
separate processes (each many asyncio clients), 127.0.0.1 only. For every
client count and server we report frames/s, bytes/s, p50/p99 tick-to-client
latency (the tick's server timestamp against the receive time), server CPU
and memory, and the load generator's CPU. In the same run:
- the product on daphne, on uvicorn, and on uvicorn with 2 worker processes;
- a minimal raw `websockets` server with the same 100 ms per-symbol batching,
  the ceiling, reported as a ratio;
- broadcast-all (every client gets every symbol) on the raw server, the
  bandwidth baseline of Property 39;
- the two channel layers delivering one group to many consumers.

python -m trading.devstack exec -- .venv/bin/python -m bench ws_fanout [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.common import BASE_DIR, cpu_seconds, percentile, progress, setup_django, table

SYMBOLS = 500
TICKS_PER_SECOND = 500
SYMBOLS_PER_CLIENT = 10
CLIENT_PROCESSES = 2  # the machine has 2 cores; more processes only contend
CONNECT_CONCURRENCY = 100
CONNECT_TIMEOUT_SECONDS = 40.0
P99_GOAL_MS = 250


def raise_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- processes: publisher, clients, raw server -------------------------------------------------
def publisher_main(tickers: list[str], stop: EventType) -> None:
    """500 ticks/s in 10 ms steps through the product's one publishing path."""
    setup_django(migrate=False)
    from apps.core.redis import redis_client
    from apps.market.feed.publish import stage_publish
    from apps.market.ticks import Tick

    rng = random.Random(1)
    prices = {t: rng.uniform(10, 500) for t in tickers}
    client = redis_client()
    per_step = TICKS_PER_SECOND // 100
    next_step = time.monotonic()
    while not stop.is_set():
        now_ms = time.time_ns() // 1_000_000
        ticks = []
        for symbol in rng.sample(tickers, per_step):
            prices[symbol] = max(0.01, prices[symbol] * (1 + rng.gauss(0, 0.001)))
            ticks.append(Tick(symbol, round(prices[symbol], 2), 100.0, rng.randint(1, 10**6), now_ms))
        pipe = client.pipeline(transaction=False)
        stage_publish(pipe, ticks)
        pipe.execute()
        next_step += 0.01
        time.sleep(max(0.0, next_step - time.monotonic()))


@dataclass
class ClientResult:
    connected: int
    failed: int
    frames: int
    bytes: int
    latencies_ms: list[float]


def clients_main(
    url: str, count: int, tickers: list[str], seed: int, ready: Any, record: EventType, done: EventType, results: Any
) -> None:
    raise_open_file_limit()
    results.put(asyncio.run(_clients(url, count, tickers, seed, ready, record, done)))


async def _clients(
    url: str, count: int, tickers: list[str], seed: int, ready: Any, record: EventType, done: EventType
) -> ClientResult:
    from websockets.asyncio.client import connect

    rng = random.Random(seed)
    state = {"recording": False, "frames": 0, "bytes": 0}
    latencies: list[float] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sockets: list[Any] = []
    origin = "http://" + urlsplit(url).netloc  # a page of the served site: the handshake checks scheme, host and port

    async def one_client(symbols: list[str]) -> None:
        async with gate:
            socket = await connect(url, origin=origin, compression=None, ping_interval=None, open_timeout=30)  # type: ignore[arg-type]
            sockets.append(socket)
            await socket.send(json.dumps({"type": "subscribe", "symbols": symbols}))
            await socket.recv()  # the acknowledgement
        async for message in socket:
            if not state["recording"]:
                continue
            received_ms = time.time_ns() / 1e6
            state["frames"] += 1
            state["bytes"] += len(message)
            frame = json.loads(message)
            for update in frame.get("updates", ()):
                latencies.append(received_ms - update["timestamp"])

    tasks = [asyncio.ensure_future(one_client(rng.sample(tickers, SYMBOLS_PER_CLIENT))) for _ in range(count)]
    deadline = time.monotonic() + CONNECT_TIMEOUT_SECONDS
    while len(sockets) < count and time.monotonic() < deadline and not all(t.done() for t in tasks):
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    ready.put(len(sockets))
    while not record.is_set():
        await asyncio.sleep(0.02)
    state["recording"] = True
    while not done.is_set():
        await asyncio.sleep(0.02)
    state["recording"] = False
    failed = sum(1 for t in tasks if t.done() and t.exception() is not None)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return ClientResult(len(sockets), failed, state["frames"], state["bytes"], latencies)


def raw_server_main(port: int, mode: str, redis_url: str, channel_prefix: str) -> None:
    """The ceiling: a minimal `websockets` server, one process, same 100 ms batching and frame limit.

    mode "selective": each client gets its own symbols; "broadcast": every client gets every update."""
    raise_open_file_limit()
    asyncio.run(_raw_server(port, mode, redis_url, channel_prefix))


async def _raw_server(port: int, mode: str, redis_url: str, channel_prefix: str) -> None:
    import redis.asyncio
    from websockets.asyncio.server import broadcast, serve
    from websockets.exceptions import ConnectionClosed

    from apps.market.feed.frames import update_frames

    wanted: dict[Any, set[str]] = {}
    changed: dict[str, str] = {}

    async def handler(socket: Any) -> None:
        with contextlib.suppress(ConnectionClosed):  # clients leaving at the end of a point
            async for message in socket:
                symbols = json.loads(message).get("symbols", [])
                wanted[socket] = set(symbols)
                await socket.send(json.dumps({"type": "subscribed", "symbols": symbols}))
        wanted.pop(socket, None)

    async def read_ticks() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        pubsub = client.pubsub()
        await pubsub.psubscribe(f"{channel_prefix}*")
        offset = len(channel_prefix)
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                changed[message["channel"].decode()[offset:]] = message["data"].decode()

    async def send_loop() -> None:
        batch = 0
        while True:
            await asyncio.sleep(0.1)
            window = dict(changed)
            changed.clear()
            if not window:
                continue
            batch += 1
            stamp = time.time_ns() // 1_000_000
            if mode == "broadcast":
                for frame in update_frames(list(window.values()), timestamp=stamp, batch_id=batch):
                    broadcast(list(wanted), frame)
                continue
            for socket, symbols in list(wanted.items()):
                updates = [window[s] for s in symbols if s in window]
                if updates:
                    for frame in update_frames(updates, timestamp=stamp, batch_id=batch):
                        broadcast([socket], frame)

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, backlog=4096):
        await asyncio.gather(read_ticks(), send_loop())


# --- one measured point ----------------------------------------------------------------------------
@dataclass
class Point:
    server: str
    clients: int
    connected: int
    frames_per_s: float
    bytes_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu: float  # % of one core
    server_mb: float
    loadgen_cpu: float  # % of one core
    machine_cpu: float  # the whole machine, % of one core (2 cores: up to 200 %)

    def row(self, ceiling: Point | None) -> list[object]:
        ratio = f"{self.frames_per_s / ceiling.frames_per_s:.2f}" if ceiling and ceiling.frames_per_s else "-"
        return [
            self.server,
            self.clients,
            self.connected,
            f"{self.frames_per_s:,.0f}",
            f"{self.bytes_per_s / 1e6:.2f} MB/s",
            f"{self.p50_ms:.0f}",
            f"{self.p99_ms:.0f}",
            f"{self.server_cpu:.0f} %",
            f"{self.server_mb:.0f}",
            f"{self.loadgen_cpu:.0f} %",
            f"{self.machine_cpu:.0f} %",
            f"{max(0.0, self.machine_cpu - self.server_cpu - self.loadgen_cpu):.0f} %",
            ratio,
        ]


def _machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine used so far (other helpers' work included)."""
    times = psutil.cpu_times()
    return times.user + times.system + times.nice + getattr(times, "irq", 0) + getattr(times, "softirq", 0)


def _memory_mb(process: psutil.Process) -> float:
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total / 2**20


@dataclass
class Setup:
    tickers: list[str]
    seconds: float
    publisher: psutil.Process  # part of the load generator


def measure(name: str, server: psutil.Process, url: str, clients: int, setup: Setup) -> Point:
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    record, done = context.Event(), context.Event()
    shares = [
        clients // CLIENT_PROCESSES + (1 if i < clients % CLIENT_PROCESSES else 0) for i in range(CLIENT_PROCESSES)
    ]
    workers = [
        context.Process(
            target=clients_main, args=(url, share, setup.tickers, 1000 + i, ready, record, done, results), daemon=True
        )
        for i, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    connected = sum(ready.get(timeout=CONNECT_TIMEOUT_SECONDS + 30) for _ in workers)
    time.sleep(1.0)  # let the first passes settle
    generators = [setup.publisher, *(psutil.Process(w.pid) for w in workers)]
    server_before, load_before = cpu_seconds(server), sum(cpu_seconds(g) for g in generators)
    machine_before = _machine_busy_seconds()
    started = time.monotonic()
    record.set()
    time.sleep(setup.seconds)
    done.set()
    elapsed = time.monotonic() - started
    server_after, load_after = cpu_seconds(server), sum(cpu_seconds(g) for g in generators)
    machine_after = _machine_busy_seconds()
    memory = _memory_mb(server)
    outcome: list[ClientResult] = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    latencies = [ms for result in outcome for ms in result.latencies_ms]
    return Point(
        server=name,
        clients=clients,
        connected=connected,
        frames_per_s=sum(r.frames for r in outcome) / elapsed,
        bytes_per_s=sum(r.bytes for r in outcome) / elapsed,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        server_cpu=(server_after - server_before) / elapsed * 100,
        server_mb=memory,
        loadgen_cpu=(load_after - load_before) / elapsed * 100,
        machine_cpu=(machine_after - machine_before) / elapsed * 100,
    )


@contextlib.contextmanager
def product_server(kind: str, env: dict[str, str]) -> Iterator[tuple[psutil.Process, str]]:
    from trading.devstack import free_port

    port = free_port()
    argv = {
        "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "trading.asgi:application"],
        "uvicorn": ["-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off",
                    "--log-level", "warning", "--backlog", "4096", "trading.asgi:application"],
        "uvicorn x2": ["-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off",
                       "--log-level", "warning", "--backlog", "4096", "--workers", "2", "trading.asgi:application"],
    }[kind]  # fmt: skip
    process = subprocess.Popen([sys.executable, *argv], cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait_listening(port, process.poll)
        yield psutil.Process(process.pid), f"ws://127.0.0.1:{port}/ws/market/"
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def raw_server(mode: str) -> Iterator[tuple[psutil.Process, str]]:
    from django.conf import settings

    from apps.market.feed.publish import SymbolChannel
    from trading.devstack import free_port

    port = free_port()
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=raw_server_main, args=(port, mode, settings.REDIS_URL, SymbolChannel.name("")), daemon=True
    )
    process.start()
    try:
        _wait_listening(port, lambda: process.exitcode)
        yield psutil.Process(process.pid), f"ws://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.join(timeout=30)


def _wait_listening(port: int, exited: Any) -> None:
    from trading.devstack import port_in_use

    deadline = time.monotonic() + 60
    while not port_in_use(port):
        if exited() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server on port {port} did not start")
        time.sleep(0.2)


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


# --- the benchmark ---------------------------------------------------------------------------------------


def run(quick: bool) -> tuple[str, list[str]]:
    raise_open_file_limit()
    # Pub/sub channels ignore Redis database numbers: a private prefix keeps other running stacks out.
    os.environ["REDIS_KEY_PREFIX"] = f"bench-ws-{uuid.uuid4().hex[:8]}"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    setup_django()
    from apps.market.models import Symbol
    from apps.market.services import symbols_seed

    for _ in symbols_seed(count=SYMBOLS):
        pass
    tickers = list(Symbol.objects.values_list("ticker", flat=True)[:SYMBOLS])
    counts = [200, 500] if quick else [500, 1000, 2000, 5000]
    seconds = 4.0 if quick else 8.0
    servers = ["uvicorn", "daphne"] if quick else ["uvicorn", "uvicorn x2", "daphne"]
    env = {**os.environ, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench-only", "LOG_LEVEL": "WARNING"}

    start_load = os.getloadavg()[0]
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    publisher = context.Process(target=publisher_main, args=(tickers, stop), daemon=True)
    publisher.start()
    setup = Setup(tickers, seconds, psutil.Process(publisher.pid))
    points: dict[str, list[Point]] = {}
    try:
        with raw_server("selective") as (process, url):
            points["raw websockets (ceiling)"] = []
            for count in counts:
                progress(f"ws_fanout: raw ceiling, {count} clients")
                points["raw websockets (ceiling)"].append(measure("raw websockets", process, url, count, setup))
        for kind in servers:
            with product_server(kind, env) as (process, url):
                points[kind] = []
                for count in counts:
                    progress(f"ws_fanout: {kind}, {count} clients")
                    points[kind].append(measure(f"hub on {kind}", process, url, count, setup))
        baseline_clients = counts[0]
        with raw_server("broadcast") as (process, url):
            progress(f"ws_fanout: broadcast-all, {baseline_clients} clients")
            broadcast = measure("broadcast-all (raw)", process, url, baseline_clients, setup)
    finally:
        stop.set()
        publisher.join(timeout=10)
    progress("ws_fanout: channel layers")
    layer_rows = channel_layer_rates(consumers=100 if quick else 200, messages=20 if quick else 50)

    ceiling = {p.clients: p for p in points["raw websockets (ceiling)"]}
    headers = ["server", "clients", "connected", "frames/s", "bytes/s", "p50 ms", "p99 ms", "server CPU",
               "server MB", "load gen CPU", "machine CPU", "others' CPU", "frames vs ceiling"]  # fmt: skip
    rows = [p.row(ceiling.get(p.clients)) for group in points.values() for p in group]
    rows.append(broadcast.row(None))
    best_product = points[servers[0]][0]
    selective = next(p for p in points[servers[0]] if p.clients == baseline_clients)
    selective_per_client = selective.bytes_per_s / max(1, selective.connected)
    broadcast_per_client = broadcast.bytes_per_s / max(1, broadcast.connected)
    bandwidth = (
        f"**{1 - selective_per_client / broadcast_per_client:.1%} less**"
        if broadcast_per_client
        else "**not measured: the broadcast-all baseline delivered nothing in this run** (see its row)"
    )
    saving = 1 - selective_per_client / broadcast_per_client if broadcast_per_client else None
    missed = [] if saving is not None and saving >= 0.8 else [f"Property 39: bandwidth saving {saving}, target 80 %"]
    reaching = {
        kind: max((p.clients for p in group if p.p99_ms <= P99_GOAL_MS and p.connected == p.clients), default=0)
        for kind, group in points.items()
    }
    lines = [
        "## WebSocket fan-out (`bench/ws_fanout.py`)",
        "",
        f"{SYMBOLS} symbols, {TICKS_PER_SECOND} ticks/s through `stage_publish`, each client subscribed to "
        f"{SYMBOLS_PER_CLIENT} random symbols, {seconds:.0f} s measured per point, clients in {CLIENT_PROCESSES} "
        "processes on 127.0.0.1. Latency: tick timestamp to client receive. CPU in % of one core; "
        'the load generator (clients + publisher) shares the same 2 cores; "others" is what the rest of the '
        f"machine used meanwhile (load average at the start {start_load:.1f}, at the end {os.getloadavg()[0]:.1f}).",
        "",
        table(headers, rows),
        "",
        f"Bandwidth per client at {baseline_clients} clients: selective {selective_per_client:,.0f} B/s "
        f"vs broadcast-all {broadcast_per_client:,.0f} B/s: {bandwidth} "
        "(Property 39: at least 80 %; aim 95 %).",
        "",
        "Largest client count with p99 <= 250 ms and every client connected: "
        + ", ".join(f"{kind} {n or 'none'}" for kind, n in reaching.items())
        + f". (First row of {best_product.server}: p99 {best_product.p99_ms:.0f} ms.)",
        "",
        "Channel layers, one group to many consumers in one process (the shape the hub avoids):",
        "",
        table(["layer", "consumers", "messages", "deliveries/s"], layer_rows),
    ]
    section = "\n".join(lines)
    return section, missed
