"""The WebSocket handshake's Origin check (trading/asgi.py)."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator

from trading.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def handshake(headers: list[tuple[bytes, bytes]]) -> bool:
    async def main() -> bool:
        client = WebsocketCommunicator(application, "/ws/market/", headers=headers)
        connected, _ = await client.connect()
        await client.disconnect()
        return bool(connected)

    return asyncio.run(main())


def test_a_page_of_this_site_may_open_the_feed() -> None:
    assert handshake([(b"origin", b"http://127.0.0.1:8000")])


def test_a_page_of_another_site_is_refused() -> None:
    assert not handshake([(b"origin", b"https://evil.example")])


def test_an_integrator_client_without_an_origin_may_connect() -> None:
    assert handshake([])
