"""The web process as the Procfile starts it (real uvicorn): what it trusts, logs and reads."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import BASE_DIR, service_env
from trading.devstack import free_port, port_in_use

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

Server = Callable[..., tuple[int, Path]]


def procfile_command(name: str) -> str:
    for line in (BASE_DIR / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.partition(":")[2].strip()
    raise LookupError(name)


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[Server]:
    """Start the Procfile's `web` command through a shell, as supervisord does; its output goes to a file."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> tuple[int, Path]:
        port = free_port()
        log = tmp_path / f"web-{port}.log"
        environment = {k: v for k, v in service_env().items() if k != "FORWARDED_ALLOW_IPS"} | env
        environment["PORT"] = environment["WEB_PORT"] = str(port)  # the web process itself, no proxy in front
        environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"  # as devstack
        with log.open("wb") as output:
            server = subprocess.Popen(  # the Procfile line runs in a shell, as under supervisord
                procfile_command("web"),
                shell=True,
                cwd=BASE_DIR,
                env=environment,
                stdout=output,
                stderr=output,
                start_new_session=True,  # one process group: the shell, uvicorn and its workers stop together
            )
        started.append(server)
        deadline = time.monotonic() + 60
        while not port_in_use(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"web did not start: {log.read_text()}")
            time.sleep(0.1)
        return port, log

    yield start
    for server in started:
        stop_group(server)


def stop_group(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group (the shell alone would leave uvicorn running), then wait."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the group's other members (uvicorn's workers) exit after the shell
        try:
            os.killpg(server.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(server.pid, signal.SIGKILL)


def remaining_after(port: int, forwarded_for: str) -> int:
    """X-RateLimit-Remaining of an anonymous API request claiming to come from `forwarded_for`."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/me", headers={"X-Forwarded-For": forwarded_for})
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as answer:  # 401: anonymous; the limiter counted it first
        return int(answer.headers["X-RateLimit-Remaining"])
    raise AssertionError("an anonymous request was served")


def test_a_forged_x_forwarded_for_from_an_untrusted_peer_does_not_pick_the_rate_limit_bucket(
    web_server: Server,
) -> None:
    port, _ = web_server(API_RATE_LIMIT="50/m")  # FORWARDED_ALLOW_IPS unset: no proxy is trusted
    assert remaining_after(port, "203.0.113.1") == 49
    assert remaining_after(port, "203.0.113.2") == 48  # same peer, same bucket, whatever it claims


def test_a_trusted_proxy_s_x_forwarded_for_names_the_client(web_server: Server) -> None:
    port, _ = web_server(API_RATE_LIMIT="50/m", FORWARDED_ALLOW_IPS="127.0.0.1")
    assert remaining_after(port, "203.0.113.1") == 49
    assert remaining_after(port, "203.0.113.2") == 49  # the proxy said another client: another bucket


def test_a_websocket_token_in_the_url_never_reaches_the_server_log(web_server: Server) -> None:
    port, log = web_server()
    secret = "sEcReT-tOkEn-0123456789"

    async def handshake() -> None:
        with pytest.raises(InvalidStatus):
            await websockets.connect(f"ws://127.0.0.1:{port}/ws/market/?token={secret}&x=1")

    asyncio.run(handshake())
    deadline = time.monotonic() + 10
    while "/ws/market/" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # the access line is written after the refusal
    text = log.read_text()
    assert "/ws/market/?token=[redacted]" in text
    assert secret not in text


def test_the_websocket_server_refuses_a_frame_over_64_kib(web_server: Server) -> None:
    port, _ = web_server()

    async def oversize() -> int | None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/market/", max_size=None) as socket:
            await socket.send("x" * 70_000)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(oversize()) == 1009  # "message too big", before any byte reaches the consumer


def test_the_procfile_passes_the_trusted_proxies_setting_to_uvicorn() -> None:
    command = procfile_command("web")
    assert '--forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-}"' in command and "--ws-max-size 65536" in command
