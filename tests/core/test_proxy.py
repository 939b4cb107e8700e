"""The front proxy as the Procfile starts it (real HAProxy, trading/conf/haproxy.cfg; ADR 0009).

Behind it, a stand-in web process that holds every request until the test lets it answer, so how
many requests reach the web at once, and which wait or are refused, is decided by the proxy alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from apps.core.admission import REFUSAL_BODY
from tests.conftest import BASE_DIR
from tests.core.test_web_server import procfile_command
from tests.trading.test_supervision import listening_pids
from tests.wait import wait_until
from trading.devstack import free_port, tool_path, wait_for_port

pytestmark = pytest.mark.slow  # starts a process

WEB_LIMITS = {"PROXY_MAX_IN_FLIGHT": "2", "PROXY_MAX_QUEUE": "1", "PROXY_QUEUE_MS": "10000"}


@dataclass
class HeldWeb:
    """An HTTP/1.1 server that records each request and answers only once `release` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request_line := await reader.readline():
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                method, path, _ = request_line.decode().split(" ", 2)
                async with self.arrived:
                    self.seen.append((method, path, headers))
                    self.arrived.notify_all()
                await self.release.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def until_seen(self, count: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.seen) >= count), 10)


@pytest.fixture
def proxy() -> Iterator[Any]:
    """Start the Procfile's `proxy` line (`sh -c 'exec ...'`, as supervisord does) with the given limits."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*, ports: tuple[int, int] | None = None, **limits: str) -> tuple[int, int]:
        port, web_port = ports or (free_port(), free_port())
        env = {**os.environ, "PATH": tool_path(), "PORT": str(port), "WEB_PORT": str(web_port), **limits}
        command = f"exec {procfile_command('proxy')}"  # as supervisord runs it: the shell becomes HAProxy
        process = subprocess.Popen(command, shell=True, cwd=BASE_DIR, env=env, start_new_session=True)
        started.append(process)
        wait_for_port(port, process=process, what="haproxy")
        return port, web_port

    start.started = started  # type: ignore[attr-defined]
    yield start
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


@asynccontextmanager
async def held_web(web_port: int) -> AsyncIterator[HeldWeb]:
    web = HeldWeb()
    server = await asyncio.start_server(web.handle, "127.0.0.1", web_port)
    try:
        yield web
    finally:
        web.release.set()
        server.close()


async def send(client: aiohttp.ClientSession, port: int, path: str, method: str = "GET", **kwargs: Any) -> Any:
    async with client.request(method, f"http://127.0.0.1:{port}{path}", **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


def test_past_its_in_flight_and_queue_limits_the_proxy_refuses_at_once_as_the_application_does(proxy: Any) -> None:
    port, web_port = proxy(**WEB_LIMITS)

    async def scenario() -> None:
        async with held_web(web_port) as web, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
            admitted = [asyncio.create_task(send(client, port, "/api/v1/me")) for _ in range(2)]
            await web.until_seen(2)
            more = [asyncio.create_task(send(client, port, "/api/v1/portfolio")) for _ in range(4)]
            answered: set[asyncio.Task[Any]] = set()
            while len(answered) < 3:  # whichever came first waits in the queue (it holds one); the rest:
                done, _ = await asyncio.wait(set(more) - answered, return_when=asyncio.FIRST_COMPLETED)
                answered |= done
            assert len(web.seen) == 2  # neither the queued nor the refused requests reached the web
            for status, headers, body in (task.result() for task in answered):
                assert (status, headers["Retry-After"], headers["Content-Type"]) == (503, "1", "application/json")
                assert body == REFUSAL_BODY  # exactly the application's own refusal (clients handle one kind)
            (queued,) = set(more) - answered
            web.release.set()
            assert [status for status, _, _ in await asyncio.gather(*admitted, queued)] == [200, 200, 200]
            assert [path for _, path, _ in web.seen] == ["/api/v1/me", "/api/v1/me", "/api/v1/portfolio"]

    asyncio.run(scenario())


def test_a_request_that_waits_in_the_queue_past_its_bound_is_refused_the_same_way(proxy: Any) -> None:
    port, web_port = proxy(**{**WEB_LIMITS, "PROXY_QUEUE_MS": "100"})

    async def scenario() -> None:
        async with held_web(web_port) as web, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
            admitted = [asyncio.create_task(send(client, port, "/api/v1/me")) for _ in range(2)]
            await web.until_seen(2)
            status, headers, body = await send(client, port, "/api/v1/me")  # queued, never given a slot
            assert (status, headers["Retry-After"], body) == (503, "1", REFUSAL_BODY)
            web.release.set()
            await asyncio.gather(*admitted)

    asyncio.run(scenario())


def test_websockets_health_checks_and_orders_pass_a_full_proxy(proxy: Any) -> None:
    """The feed's sockets live for hours and orders mostly wait on the engine: neither takes a request slot,
    and a load balancer's probe must see the process, not the proxy's queue."""
    port, web_port = proxy(**WEB_LIMITS)

    async def scenario() -> None:
        async with held_web(web_port) as web, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
            held = [asyncio.create_task(send(client, port, "/api/v1/me")) for _ in range(2)]
            await web.until_seen(2)
            others = [
                asyncio.create_task(send(client, port, "/healthz")),
                asyncio.create_task(send(client, port, "/metrics")),
                asyncio.create_task(send(client, port, "/api/v1/orders", "POST", json={"symbol": "AAPL"})),
                asyncio.create_task(send(client, port, "/ws/market/", headers={"Upgrade": "websocket"})),
            ]
            await web.until_seen(6)
            passed = sorted(path for _, path, _ in web.seen[2:])
            assert passed == ["/api/v1/orders", "/healthz", "/metrics", "/ws/market/"]
            web.release.set()
            await asyncio.gather(*held, *others)

    asyncio.run(scenario())


def test_the_proxy_passes_the_client_headers_through_untouched(proxy: Any) -> None:
    """uvicorn decides whom to believe (FORWARDED_ALLOW_IPS): the proxy neither adds nor drops X-Forwarded-*."""
    port, web_port = proxy(**WEB_LIMITS)

    async def scenario() -> None:
        async with held_web(web_port) as web, aiohttp.ClientSession() as client:
            web.release.set()
            await send(client, port, "/api/v1/me", headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "r-1"})
            await send(client, port, "/api/v1/me")
            first, second = (headers for _, _, headers in web.seen)
            assert (first["x-forwarded-for"], first["x-request-id"]) == ("203.0.113.9", "r-1")
            assert "x-forwarded-for" not in second

    asyncio.run(scenario())


def test_two_proxy_processes_share_the_port_and_a_killed_one_leaves_the_other_serving(proxy: Any) -> None:
    """`make run` starts two (each HAProxy connection takes two descriptors: one process would run out of them
    before the feed's 10 000 sockets); the kernel spreads new connections over the live ones."""
    ports = proxy(**WEB_LIMITS)
    proxy(ports=ports, **WEB_LIMITS)
    first, second = proxy.started
    port, web_port = ports
    wait_until(lambda: listening_pids(port) == {first.pid, second.pid})

    async def answers(count: int) -> list[int]:
        async with held_web(web_port) as web:
            web.release.set()
            statuses = []
            for _ in range(count):  # a new connection each: each one is routed afresh
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as client:
                    statuses.append((await send(client, port, "/api/v1/me"))[0])
            return statuses

    assert asyncio.run(answers(10)) == [200] * 10
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert second.poll() is None and asyncio.run(answers(20)) == [200] * 20
