"""The WebSocket handshake's Host and Origin checks (trading/asgi.py)."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

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
    assert handshake([(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")])
    assert handshake([(b"host", b"localhost"), (b"origin", b"http://localhost:80")])  # the default port


def test_a_page_of_another_site_is_refused() -> None:
    assert not handshake([(b"host", b"127.0.0.1:8000"), (b"origin", b"https://evil.example")])


@pytest.mark.parametrize(
    "origin",
    [
        b"http://127.0.0.1:9999",  # another server on the same host: another origin
        b"http://127.0.0.1",  # port 80, not 8000
        b"https://127.0.0.1:8000",  # another scheme
        b"null",
        b"http://127.0.0.1:99999",
    ],
)
def test_an_origin_differing_in_scheme_or_port_is_refused(origin: bytes) -> None:
    assert not handshake([(b"host", b"127.0.0.1:8000"), (b"origin", origin)])


@pytest.mark.parametrize("host", [b"evil.example", b"evil.example:8000", b""])
def test_a_host_outside_allowed_hosts_is_refused_as_http_would(host: bytes) -> None:
    assert not handshake([(b"host", host), (b"origin", b"http://" + host)])
    assert not handshake([(b"host", host)])


def test_a_handshake_without_a_host_is_refused() -> None:
    assert not handshake([(b"origin", b"http://127.0.0.1:8000")])


def test_a_trusted_origin_of_another_port_may_open_the_feed() -> None:
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://app.example.com"], ALLOWED_HOSTS=["feed.example.com"]):
        assert handshake([(b"host", b"feed.example.com"), (b"origin", b"https://app.example.com")])


def test_behind_a_tls_proxy_the_https_page_matches_when_the_proxy_header_is_trusted() -> None:
    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", b"https://127.0.0.1:8000"), (b"x-forwarded-proto", b"https")]
    assert not handshake(headers)
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
        assert handshake(headers)


def test_an_integrator_client_without_an_origin_may_connect() -> None:
    assert handshake([(b"host", b"127.0.0.1:8000")])
