"""The feed end to end: a real ASGI server process, a plain `websockets` client, ticks from `stage_publish`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import websockets

from apps.core.redis import redis_client
from apps.market.feed.publish import stage_publish
from apps.market.models import Symbol
from apps.market.ticks import Tick
from tests.conftest import BASE_DIR, service_env
from trading.devstack import free_port, port_in_use

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SERVERS = {
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "trading.asgi:application"],
    "uvicorn": ["-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--lifespan", "off",
                "--ws", "websockets-sansio", "--ws-per-message-deflate", "false",
                "--log-level", "warning", "trading.asgi:application"],  # as the Procfile serves it
}  # fmt: skip


@pytest.fixture(params=sorted(SERVERS))
def server_port(request: pytest.FixtureRequest) -> Iterator[int]:
    Symbol.objects.bulk_create(
        Symbol(ticker=t, name=t, sector="energy", initial_price=Decimal("5.00")) for t in ("OIL", "GAS", "SUN")
    )
    port = free_port()
    argv = [sys.executable, *(arg.format(port=port) for arg in SERVERS[request.param])]
    server = subprocess.Popen(argv, cwd=BASE_DIR, env=service_env())
    try:
        deadline = time.monotonic() + 30
        while not port_in_use(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{request.param} did not start")
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=20)


def publish(symbol: str, price: float) -> None:
    pipe = redis_client().pipeline()
    tick = Tick(symbol=symbol, price=price, previous_close=5.0, volume=10, timestamp=int(time.time() * 1000))
    stage_publish(pipe, [tick])
    pipe.execute()


def test_a_real_server_sends_a_websocket_client_only_the_ticks_of_its_symbols(server_port: int) -> None:
    async def scenario() -> None:
        url = f"ws://127.0.0.1:{server_port}/ws/market/"
        async with websockets.connect(url, origin=f"http://127.0.0.1:{server_port}") as socket:
            await socket.send(json.dumps({"type": "subscribe", "symbols": ["OIL", "SUN"]}))
            ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert ack["type"] == "subscribed" and ack["symbols"] == ["OIL", "SUN"]
            await socket.send("not json")
            assert json.loads(await asyncio.wait_for(socket.recv(), 10))["code"] == "malformed_json"
            received: dict[str, float] = {}
            for price in (6.0, 7.0, 8.0):
                publish("GAS", price)
                publish("OIL", price)
                await asyncio.sleep(0.15)
            publish("SUN", 9.0)
            while received.get("OIL") != 8.0 or "SUN" not in received:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
                assert frame["type"] == "stock_updates" and time.time() * 1000 - frame["timestamp"] < 5000
                received.update({u["symbol"]: u["price"] for u in frame["updates"]})
            assert set(received) == {"OIL", "SUN"}

    asyncio.run(scenario())
