"""The hub's direct write path (feed/wire.py): pre-encoded frames straight to a uvicorn socket's transport."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from apps.market.feed.frames import MAX_FRAME_BYTES, update_frames
from apps.market.feed.hub import MarketHub
from apps.market.feed.wire import DirectSocket, direct_socket, encode_frames
from tests.market.feed_fakes import FakeSource, encoded_update, run_now, run_virtual

UNIVERSE = [f"S{n:03d}" for n in range(40)]


def decode_frames(data: bytes) -> list[dict[str, Any]]:
    """Unmasked server text frames, parsed as a client would."""
    frames, offset = [], 0
    while offset < len(data):
        assert data[offset] == 0x81  # FIN, text
        size, offset = data[offset + 1], offset + 2
        if size == 126:
            size, offset = int.from_bytes(data[offset : offset + 2], "big"), offset + 2
        assert size <= MAX_FRAME_BYTES
        frames.append(json.loads(data[offset : offset + size]))
        offset += size
    return frames


class FakeDirect(DirectSocket):
    """A socket whose server buffer holds `buffered` bytes until the test drains it; None: closed."""

    def __init__(self) -> None:
        super().__init__(protocol=None)
        self.buffer: int | None = 0
        self.written: list[bytes] = []

    def buffered(self) -> int | None:
        return self.buffer

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def frames(self) -> list[dict[str, Any]]:
        return [frame for data in self.written for frame in decode_frames(data)]

    def latest(self) -> dict[str, float]:
        return {u["symbol"]: u["price"] for f in self.frames() if f["type"] == "stock_updates" for u in f["updates"]}


class DirectConnection:
    def __init__(self) -> None:
        self.socket = FakeDirect()
        self.closed_stalled = False
        self.asgi_frames: list[str] = []

    def direct_socket(self) -> DirectSocket:
        return self.socket

    async def send_frame(self, text: str) -> None:
        self.asgi_frames.append(text)

    async def close_stalled(self) -> None:
        self.closed_stalled = True


def test_encoded_frames_are_what_the_websockets_library_itself_writes() -> None:
    texts = update_frames([encoded_update(s, 1.5) for s in UNIVERSE], timestamp=1, batch_id=2)
    assert len(texts) > 1 and any(len(t) >= 126 for t in texts)  # split, and long enough for a 2-byte length
    expected = b"".join(Frame(Opcode.TEXT, t.encode()).serialize(mask=False, extensions=[]) for t in texts)
    assert encode_frames(texts) == expected
    assert encode_frames(['{"a":1}']) == Frame(Opcode.TEXT, b'{"a":1}').serialize(mask=False, extensions=[])


class LoopbackTransport(asyncio.Transport):
    """What uvicorn's protocol writes, kept; `buffered` bytes still waiting for the kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.data: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closing = True


HANDSHAKE = (
    b"GET /ws/market/ HTTP/1.1\r\nHost: testserver\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_on_a_real_uvicorn_connection_the_direct_path_writes_what_uvicorn_itself_writes() -> None:
    """The real protocol class, built and handshaken as uvicorn does: the attributes the path reads exist, and
    a direct write is byte for byte the server's own `websocket.send` of the same text."""
    texts = update_frames([encoded_update(s, 2.5) for s in UNIVERSE[:3]], timestamp=1, batch_id=1)

    async def scenario() -> tuple[list[bytes], list[bytes], list[int | None]]:
        accepted: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "websocket.accept"})
            accepted.set_result(send)
            await asyncio.Event().wait()

        config = Config(app=app, ws="websockets-sansio", ws_per_message_deflate=False, ws_ping_interval=None)
        config.load()
        protocol = WebSocketsSansIOProtocol(config, ServerState(), {}, asyncio.get_running_loop())
        transport = LoopbackTransport()
        protocol.connection_made(transport)
        before = direct_socket(protocol.send)
        assert before is not None
        states = [before.buffered()]  # the handshake is not done yet
        protocol.data_received(HANDSHAKE)
        send = await asyncio.wait_for(accepted, 5)
        socket = direct_socket(send)
        assert socket is not None
        transport.buffered = 7
        states.append(socket.buffered())
        transport.data.clear()
        for text in texts:
            await send({"type": "websocket.send", "text": text})
        by_uvicorn = list(transport.data)
        transport.data.clear()
        socket.write(encode_frames(texts))
        by_hub = list(transport.data)
        await send({"type": "websocket.close", "code": 1000})
        states.append(socket.buffered())  # close sent: no more frames
        protocol.connection_lost(None)
        for task in list(protocol.tasks):
            task.cancel()
        return by_uvicorn, by_hub, states

    by_uvicorn, by_hub, states = asyncio.run(scenario())
    assert b"".join(by_hub) == b"".join(by_uvicorn)
    assert states == [None, 7, None]


def test_only_uvicorns_sansio_protocol_gets_the_direct_path() -> None:
    async def other_send(message: dict[str, Any]) -> None: ...

    assert direct_socket(other_send) is None
    assert direct_socket(None) is None
    protocol = WebSocketsSansIOProtocol.__new__(WebSocketsSansIOProtocol)
    protocol.transport = LoopbackTransport()
    protocol.conn = ServerProtocol()
    assert isinstance(direct_socket(protocol.send), DirectSocket)
    protocol.conn.extensions = [object()]  # type: ignore[list-item]  # e.g. per-message-deflate negotiated
    assert direct_socket(protocol.send) is None


@settings(max_examples=100, deadline=None)
@given(
    subscriptions=st.lists(st.sets(st.sampled_from(UNIVERSE), min_size=1, max_size=10), min_size=1, max_size=6),
    windows=st.lists(
        st.tuples(
            st.lists(st.tuples(st.sampled_from(UNIVERSE), st.integers(1, 10_000)), max_size=20),
            st.lists(st.booleans(), min_size=6, max_size=6),  # which sockets still hold bytes this window
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_direct_writes_deliver_each_connection_the_latest_price_of_its_symbols_and_nothing_else(
    subscriptions: list[set[str]], windows: list[tuple[list[tuple[str, int]], list[bool]]]
) -> None:
    """Feature: trading-performance-optimization, Property 6: each connection receives, per window, the latest
    update of each of its changed symbols (over the direct write path, busy sockets conflated), in frames of at
    most 1 024 bytes carrying only its own symbols (Properties 5, 23)."""
    hub = MarketHub(FakeSource())
    connections = [DirectConnection() for _ in subscriptions]
    for connection, symbols in zip(connections, subscriptions, strict=True):
        run_now(hub.watch(connection, symbols))
    latest: dict[str, float] = {}
    for ticks, busy in windows:
        for symbol, cents in ticks:
            latest[symbol] = cents / 100
            hub.deliver(symbol, encoded_update(symbol, cents / 100))
        for connection, holding in zip(connections, busy, strict=False):
            connection.socket.buffer = 100 if holding else 0
        hub.flush()
    for connection in connections:
        connection.socket.buffer = 0
    hub.flush()  # every socket drained: the pending latest prices go out
    for connection, symbols in zip(connections, subscriptions, strict=True):
        assert connection.asgi_frames == []  # all of it over the direct path
        assert connection.socket.latest() == {s: p for s, p in latest.items() if s in symbols}


def test_a_busy_socket_is_skipped_and_then_gets_only_the_newest_prices_with_a_notice() -> None:
    hub = MarketHub(FakeSource())
    slow, fast = DirectConnection(), DirectConnection()
    for connection in (slow, fast):
        run_now(hub.watch(connection, ["AAA"]))
    slow.socket.buffer = 512  # the kernel has not taken its last frames
    for price in (1.0, 2.0, 3.0):
        hub.deliver("AAA", encoded_update("AAA", price))
        stats = hub.flush()
    assert stats.skipped_busy == 1 and slow.socket.written == [] and len(fast.socket.written) == 3
    slow.socket.buffer = 0
    hub.flush()
    frames = slow.socket.frames()
    assert [f["type"] for f in frames] == ["notice", "stock_updates"]
    assert frames[0]["code"] == "updates_conflated" and frames[1]["updates"][0]["price"] == 3.0


def test_a_closed_socket_is_skipped_without_keeping_its_updates() -> None:
    hub = MarketHub(FakeSource())
    gone = DirectConnection()
    run_now(hub.watch(gone, ["AAA"]))
    gone.socket.buffer = None
    hub.deliver("AAA", encoded_update("AAA", 1.0))
    stats = hub.flush()
    assert stats.connections == 0 and stats.skipped_busy == 0 and gone.socket.written == []
    assert hub.pending_updates() == 0


def test_a_socket_that_takes_nothing_for_the_stall_bound_is_forgotten_and_closed_one_that_drains_is_kept() -> None:
    async def scenario() -> tuple[MarketHub, DirectConnection, DirectConnection, float]:
        loop = asyncio.get_running_loop()
        hub = MarketHub(FakeSource(), clock=loop.time, stall_seconds=10.0)
        silent, trickle = DirectConnection(), DirectConnection()
        await hub.watch(silent, ["AAA", "BBB"])
        await hub.watch(trickle, ["AAA"])
        silent.socket.buffer = trickle.socket.buffer = 1_000_000
        hub.start()
        started, price = loop.time(), 1.0
        while hub.symbols_of(silent) and loop.time() - started < 60:
            price += 1
            hub.deliver("AAA", encoded_update("AAA", price))
            hub.deliver("BBB", encoded_update("BBB", price))
            trickle.socket.buffer = max(1, (trickle.socket.buffer or 0) - 100)  # it takes a little each time
            await asyncio.sleep(0.05)
        closed_after = loop.time() - started
        await asyncio.sleep(1.0)
        await hub.close()
        return hub, silent, trickle, closed_after

    hub, silent, trickle, closed_after = run_virtual(scenario())
    assert silent.closed_stalled and not trickle.closed_stalled
    assert 10.0 <= closed_after <= 10.0 + 3 * 0.1  # from the first pass that found it full, checked each pass
    assert hub.subscribed_symbols == frozenset({"AAA"})  # BBB had no one else: unsubscribed at once
    assert hub.symbols_of(trickle) == frozenset({"AAA"})
