"""`/ws/market/` through the real ASGI application (Channels routing, the process hub, Redis pub/sub)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.core.redis import redis_client
from apps.market.feed.frames import MAX_FRAME_BYTES
from apps.market.feed.hub import market_hub
from apps.market.feed.publish import stage_publish
from apps.market.feed.session import FeedSession
from apps.market.models import Symbol
from apps.market.ticks import Tick
from trading.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

Scenario = Callable[[WebsocketCommunicator], Awaitable[None]]


@pytest.fixture
def listed() -> list[str]:
    tickers = ["AAA", "BBB", "CCC"] + [f"Z{n:03d}" for n in range(210)]
    Symbol.objects.bulk_create(
        Symbol(ticker=t, name=f"{t} Corp", sector="technology", initial_price=Decimal("10.00")) for t in tickers
    )
    return tickers


def publish(*ticks: tuple[str, float]) -> None:
    pipe = redis_client().pipeline()
    stage_publish(pipe, [Tick(symbol=s, price=p, previous_close=10.0, volume=1, timestamp=1) for s, p in ticks])
    pipe.execute()


def communicator(path: str = "/ws/market/") -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=[(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")])


def run(scenario: Scenario, path: str = "/ws/market/") -> None:
    async def main() -> None:
        client = communicator(path)
        connected, _ = await client.connect()
        assert connected
        try:
            await scenario(client)
        finally:
            await client.disconnect()

    asyncio.run(main())


async def send(client: WebsocketCommunicator, message: dict[str, Any] | str) -> dict[str, Any]:
    await client.send_to(text_data=message if isinstance(message, str) else json.dumps(message))
    return json.loads(await client.receive_from(timeout=5))


async def acknowledgement(client: WebsocketCommunicator, message: dict[str, Any], count: int) -> list[str]:
    """Send `message` and collect its acknowledgement of `count` symbols (long lists come in several frames)."""
    await client.send_to(text_data=json.dumps(message))
    symbols: list[str] = []
    while len(symbols) < count:
        frame = json.loads(await client.receive_from(timeout=5))
        assert frame["type"] in {"subscribed", "pong"}
        symbols += frame["symbols"]
    return symbols


async def next_updates(client: WebsocketCommunicator) -> dict[str, Any]:
    while True:
        frame = json.loads(await client.receive_from(timeout=5))
        if frame["type"] == "stock_updates":
            return frame


def test_subscribing_is_acknowledged_with_the_connections_subscriptions_and_a_server_timestamp(
    listed: list[str],
) -> None:
    async def scenario(client: WebsocketCommunicator) -> None:
        ack = await send(client, {"type": "subscribe", "symbols": ["bbb", "AAA"]})
        assert ack["type"] == "subscribed" and ack["symbols"] == ["AAA", "BBB"]
        assert isinstance(ack["timestamp"], int)
        pong = await send(client, {"type": "ping"})
        assert pong["type"] == "pong" and pong["symbols"] == ["AAA", "BBB"]

    run(scenario)


def test_a_client_receives_only_its_subscribed_symbols(listed: list[str]) -> None:
    async def scenario(client: WebsocketCommunicator) -> None:
        await send(client, {"type": "subscribe", "symbols": ["AAA"]})
        publish(("BBB", 11.0), ("AAA", 12.0), ("CCC", 13.0), ("AAA", 12.5))
        frame = await next_updates(client)
        assert [u["symbol"] for u in frame["updates"]] == ["AAA"]
        assert frame["updates"][0]["price"] == 12.5  # conflated to the latest within the window
        assert {"timestamp", "batchId"} <= frame.keys()
        assert await client.receive_nothing(timeout=0.3)

    run(scenario)


def test_unsubscribe_without_a_list_drops_every_symbol_and_redis_interest(listed: list[str]) -> None:
    async def scenario(client: WebsocketCommunicator) -> None:
        await send(client, {"type": "subscribe", "symbols": ["AAA", "BBB"]})
        assert market_hub().subscribed_symbols == {"AAA", "BBB"}
        ack = await send(client, {"type": "unsubscribe", "symbols": ["AAA"]})
        assert ack == {**ack, "type": "unsubscribed", "symbols": ["BBB"]}
        ack = await send(client, {"type": "unsubscribe"})
        assert ack["symbols"] == []
        assert market_hub().subscribed_symbols == frozenset()
        publish(("AAA", 1.0), ("BBB", 2.0))
        assert await client.receive_nothing(timeout=0.3)

    run(scenario)


@pytest.mark.parametrize(
    ("message", "code", "named"),
    [
        ("{oops", "malformed_json", "JSON"),
        ("[" * 10_000, "malformed_json", "nested too deeply"),  # RecursionError, not ValueError
        ({"type": "teleport"}, "unknown_type", "teleport"),
        ({"type": "subscribe", "symbols": ["AAA", "NOPE", "ZZZZ"]}, "unknown_symbol", "NOPE, ZZZZ"),
        ({"type": "subscribe", "symbols": 5}, "invalid_message", "symbols"),
        ({"type": "subscribe", "symbols": [f"Z{n:03d}" for n in range(201)]}, "too_many_symbols", "200"),
    ],
)
def test_a_bad_message_gets_an_error_frame_and_the_connection_stays_open(
    listed: list[str], message: dict[str, Any] | str, code: str, named: str
) -> None:
    async def scenario(client: WebsocketCommunicator) -> None:
        error = await send(client, message)
        assert error["type"] == "error" and error["code"] == code and named in error["message"]
        pong = await send(client, {"type": "ping"})
        assert pong["type"] == "pong" and pong["symbols"] == []  # nothing half-applied

    run(scenario)


def test_more_than_200_symbols_in_total_is_refused_and_the_earlier_ones_are_kept(listed: list[str]) -> None:
    async def scenario(client: WebsocketCommunicator) -> None:
        first = [f"Z{n:03d}" for n in range(150)]
        await acknowledgement(client, {"type": "subscribe", "symbols": first}, 150)
        error = await send(client, {"type": "subscribe", "symbols": [f"Z{n:03d}" for n in range(150, 210)]})
        assert error["code"] == "too_many_symbols" and "150 already" in error["message"]
        assert await acknowledgement(client, {"type": "ping"}, 150) == first

    run(scenario)


def test_an_eleventh_message_in_one_second_gets_a_rate_limit_error(listed: list[str]) -> None:
    async def scenario(client: WebsocketCommunicator) -> None:
        for _ in range(11):
            await client.send_to(text_data='{"type":"ping"}')
        replies = [json.loads(await client.receive_from(timeout=5)) for _ in range(11)]
        assert [r["type"] for r in replies] == ["pong"] * 10 + ["error"]
        assert replies[-1]["code"] == "rate_limited"

    run(scenario)


def test_sustained_abuse_closes_the_connection_with_1008(listed: list[str]) -> None:
    async def scenario(client: WebsocketCommunicator) -> None:
        for _ in range(60):
            await client.send_to(text_data='{"type":"ping"}')
        closed = None
        for _ in range(60):
            output = await client.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                closed = output
                break
        assert closed is not None and closed["code"] == 1008

    run(scenario)


def test_every_frame_stays_within_one_kilobyte_when_many_subscribed_symbols_tick_at_once(listed: list[str]) -> None:
    async def scenario(client: WebsocketCommunicator) -> None:
        symbols = [f"Z{n:03d}" for n in range(200)]
        await acknowledgement(client, {"type": "subscribe", "symbols": symbols}, 200)
        frames: list[str] = []
        publish(*[(s, 123456.78) for s in symbols])
        received: set[str] = set()
        while len(received) < 200:
            frame = await client.receive_from(timeout=5)
            frames.append(frame)
            received |= {u["symbol"] for u in json.loads(frame)["updates"]}
        assert all(len(frame.encode()) <= MAX_FRAME_BYTES for frame in frames)
        assert len({json.loads(f).get("batchId") for f in frames if "updates" in f}) <= 2

    run(scenario)


def test_an_unknown_token_is_refused_at_the_handshake_and_a_valid_one_is_served(
    listed: list[str], trader: tuple[object, str]
) -> None:
    """The token travels in Sec-WebSocket-Protocol (`bearer.<token>`), never in the URL."""

    def offering(token: str) -> WebsocketCommunicator:
        headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
        return WebsocketCommunicator(application, "/ws/market/", headers, subprotocols=["bearer", f"bearer.{token}"])

    async def main() -> None:
        connected, code = await offering("not-a-token").connect()
        assert not connected and code == 4401
        accepted = offering(trader[1])
        connected, subprotocol = await accepted.connect()
        assert connected and subprotocol == "bearer"  # the token itself is never echoed
        await accepted.disconnect()

    asyncio.run(main())


@pytest.mark.parametrize("token", ["valid", "not-a-token"])
def test_a_token_in_the_url_is_refused_so_it_never_reaches_an_access_log(
    listed: list[str], trader: tuple[object, str], token: str
) -> None:
    async def main() -> None:
        refused = communicator(f"/ws/market/?token={trader[1] if token == 'valid' else token}")
        connected, code = await refused.connect()
        assert not connected and code == 4400

    asyncio.run(main())


def test_anonymous_connections_are_served(listed: list[str]) -> None:
    async def scenario(client: WebsocketCommunicator) -> None:
        assert (await send(client, {"type": "ping"}))["type"] == "pong"

    run(scenario)


def test_a_message_whose_handling_fails_unexpectedly_gets_an_error_frame_and_the_connection_stays_open(
    listed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(client: WebsocketCommunicator) -> None:
        await send(client, {"type": "subscribe", "symbols": ["AAA"]})

        async def broken(self: FeedSession, symbols: list[str]) -> None:
            raise KeyError("a bug")

        monkeypatch.setattr(FeedSession, "_subscribe", broken)
        error = await send(client, {"type": "subscribe", "symbols": ["BBB"]})
        assert error["type"] == "error" and error["code"] == "internal_error"
        assert (await send(client, {"type": "ping"}))["symbols"] == ["AAA"]

    run(scenario)


def test_a_consumer_whose_handler_raises_is_forgotten_by_the_hub(
    listed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.core.metrics import WS_CONNECTIONS
    from apps.market.consumers import MarketFeedConsumer

    async def main() -> None:
        client = communicator()
        assert (await client.connect())[0]
        connections_before = WS_CONNECTIONS._value.get()
        await send(client, {"type": "subscribe", "symbols": ["AAA", "BBB"]})
        assert market_hub().subscribed_symbols == {"AAA", "BBB"}

        async def raising(self: MarketFeedConsumer, text_data: str | None = None, bytes_data: bytes | None = None):
            raise RecursionError("what a handler might raise")

        monkeypatch.setattr(MarketFeedConsumer, "receive", raising)
        await client.send_to(text_data="{}")
        with pytest.raises(RecursionError):
            await client.wait(timeout=5)
        assert market_hub().subscribed_symbols == frozenset()
        assert WS_CONNECTIONS._value.get() == connections_before - 1

    asyncio.run(main())


BAD_MESSAGES = {
    "{oops": "malformed_json",
    '{"type": "teleport"}': "unknown_type",
    '{"type": "subscribe", "symbols": ["NOPE"]}': "unknown_symbol",
    '{"type": "subscribe", "symbols": 5}': "invalid_message",
}


@pytest.fixture
def feed_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop (so one process hub, subscribed once) for all the examples of a test."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(market_hub_close(loop))
    loop.close()


async def market_hub_close(loop: asyncio.AbstractEventLoop) -> None:
    from apps.market.feed import hub as hub_module

    hub = hub_module._hubs.pop(loop, None)
    if hub is not None:
        await hub.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    symbols=st.sets(st.sampled_from(["AAA", "BBB", "CCC"]), min_size=1),
    bad=st.lists(st.sampled_from(sorted(BAD_MESSAGES)), max_size=3),
    ticks=st.lists(st.tuples(st.sampled_from(["AAA", "BBB", "CCC"]), st.integers(1, 9999)), max_size=6),
)
def test_a_websocket_sessions_connections_subscriptions_frames_bytes_and_errors_are_measured(
    listed: list[str], feed_loop: asyncio.AbstractEventLoop, symbols: set[str], bad: list[str], ticks: list[tuple]
) -> None:
    """Feature: trading-performance-optimization, Property 31: For any system operation, relevant performance metrics
    should be logged and tracked

    A real connection through the ASGI application: the connection gauge counts it while open, the subscription
    gauge its symbols, the error counter each error frame by code, and the frame and byte counters exactly the
    update frames it received."""
    from apps.core.metrics import WS_BYTES, WS_CONNECTIONS, WS_ERRORS, WS_FRAMES, WS_SUBSCRIPTIONS

    def errors(code: str) -> float:
        return WS_ERRORS.labels(code=code)._value.get()

    async def scenario() -> None:
        connections, subscriptions = WS_CONNECTIONS._value.get(), WS_SUBSCRIPTIONS._value.get()
        frames, sent_bytes = WS_FRAMES._value.get(), WS_BYTES._value.get()
        errors_before = {code: errors(code) for code in set(BAD_MESSAGES.values())}
        client = communicator()
        connected, _ = await client.connect()
        assert connected
        try:
            assert WS_CONNECTIONS._value.get() == connections + 1
            await acknowledgement(client, {"type": "subscribe", "symbols": sorted(symbols)}, len(symbols))
            assert WS_SUBSCRIPTIONS._value.get() == subscriptions + len(symbols)
            for message in bad:
                assert (await send(client, message))["type"] == "error"
            publish(*((symbol, float(price)) for symbol, price in ticks))
            latest = {symbol: float(price) for symbol, price in ticks if symbol in symbols}
            received: list[str] = []
            seen: dict[str, float] = {}
            while seen != latest:
                received.append(await client.receive_from(timeout=5))
                seen.update({u["symbol"]: u["price"] for u in json.loads(received[-1])["updates"]})
        finally:
            await client.disconnect()
        assert WS_CONNECTIONS._value.get() == connections
        assert WS_SUBSCRIPTIONS._value.get() == subscriptions
        assert WS_FRAMES._value.get() - frames == len(received)
        assert WS_BYTES._value.get() - sent_bytes == sum(len(frame) for frame in received)
        for code, before in errors_before.items():
            assert errors(code) - before == sum(1 for message in bad if BAD_MESSAGES[message] == code)

    feed_loop.run_until_complete(scenario())
