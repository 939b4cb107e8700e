"""A WebSocket client that never reads, against the real web process (uvicorn as the Procfile starts it).

Such a client costs the server process little (the hub keeps at most one pass's frames in flight for it and
its changed symbols, conflated), but the kernel keeps buffering for it (a loopback socket's send buffer grows
to ~4 MB). What bounds that: the server's keepalive (`--ws-ping-interval/--ws-ping-timeout`, WS_PING_SECONDS,
10 s each in the Procfile) closes a connection that answers no ping, and the hub forgets its subscriptions.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from decimal import Decimal

import psutil
import pytest
import websockets

from apps.core.redis import redis_client
from apps.market.feed.publish import SymbolChannel
from apps.market.models import Sector, Symbol
from bench.faults import silent_client  # the fault bench's silent reader: one raw-socket client for both
from tests.core.test_web_server import Server, web_server  # noqa: F401 - the fixture
from tests.market.feed_fakes import encoded_update
from tests.wait import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SILENT_ONLY = [f"S{n:03d}" for n in range(30)]
SHARED = [f"S{n:03d}" for n in range(30, 40)]
READER_ONLY = [f"S{n:03d}" for n in range(40, 50)]
SILENT_CLIENTS = 20


def server_rss(pid: int) -> int:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


class Ticker(threading.Thread):
    """Publishes a new price of every symbol every 20 ms, as the simulator would (but faster)."""

    def __init__(self, symbols: list[str]) -> None:
        super().__init__(daemon=True)
        self.symbols, self.stopping = symbols, threading.Event()

    def run(self) -> None:
        client, price = redis_client(), 1.0
        while not self.stopping.wait(0.02):
            price += 0.01
            pipe = client.pipeline()
            for ticker in self.symbols:
                pipe.publish(SymbolChannel.name(ticker), encoded_update(ticker, round(price, 2)))
            pipe.execute()


class Reader(threading.Thread):
    def __init__(self, port: int, symbols: list[str]) -> None:
        super().__init__(daemon=True)
        self.port, self.symbols, self.stopping = port, symbols, threading.Event()
        self.frames: list[float] = []

    def run(self) -> None:
        asyncio.run(self._read())

    async def _read(self) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{self.port}/ws/market/") as socket_:
            await socket_.send(json.dumps({"type": "subscribe", "symbols": self.symbols}))
            while not self.stopping.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(socket_.recv(), 0.5))
                except TimeoutError:
                    continue
                if frame["type"] == "stock_updates":
                    self.frames.append(time.monotonic())


def subscribers(symbols: list[str]) -> int:
    counts = redis_client().pubsub_numsub(*(SymbolChannel.name(s) for s in symbols))
    return sum(count for _, count in counts)


def test_a_client_that_never_reads_costs_little_is_closed_after_the_stall_bound_and_others_keep_receiving(
    web_server: Server,  # noqa: F811 - the imported fixture
) -> None:
    for ticker in SILENT_ONLY + SHARED + READER_ONLY:
        Symbol.objects.create(ticker=ticker, name=ticker, sector=Sector.ENERGY, initial_price=Decimal("10.00"))
    port, _ = web_server(WS_PING_SECONDS="1")  # the Procfile's 10 s, shortened
    (pid,) = [
        c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.status == "LISTEN"
    ][:1]
    ticker = Ticker(SILENT_ONLY + SHARED + READER_ONLY)
    reader = Reader(port, SHARED + READER_ONLY)
    ticker.start()
    reader.start()
    try:
        wait_until(lambda: len(reader.frames) >= 10, timeout=20)  # the hub runs; its code is loaded
        rss_before = server_rss(pid)
        silent = [silent_client(port, SILENT_ONLY + SHARED) for _ in range(SILENT_CLIENTS)]
        wait_until(lambda: subscribers(SILENT_ONLY) > 0, timeout=10)
        closed_after = wait_until(lambda: subscribers(SILENT_ONLY) == 0, timeout=30)
        growth = server_rss(pid) - rss_before
        frames_before = len(reader.frames)
        wait_until(lambda: len(reader.frames) >= frames_before + 5, timeout=5)  # still served afterwards
        gaps = [b - a for a, b in zip(reader.frames, reader.frames[1:], strict=False)]
        assert closed_after < 10  # ping every 1 s, unanswered for 1 s: closed, not held for the default 40 s
        assert growth < SILENT_CLIENTS * 256 * 1024  # measured: +0.8 MB for 20
        assert max(gaps) < 1.0  # the reader was served every window meanwhile (measured: max gap 0.11 s)
        for sock in silent:
            sock.close()
    finally:
        ticker.stopping.set()
        reader.stopping.set()
        reader.join(10)
