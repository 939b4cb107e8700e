"""A trader's own events on `/ws/market/`, through the real ASGI application and Redis (issue 19).

Connections are authenticated the way integrators are (`bearer.<token>` subprotocol); events are
published the way the order path publishes them (`apps/portfolio/events.py`).
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from pydantic import TypeAdapter

from apps.market.feed.frames import MAX_FRAME_BYTES
from apps.market.feed.protocol import ServerFrame
from apps.portfolio.events import publish_account_event
from apps.portfolio.models import Trader
from apps.portfolio.services import trader_create
from trading.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
HEADERS = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
FRAMES: TypeAdapter[Any] = TypeAdapter(ServerFrame)


@pytest.fixture
def traders(db: None) -> dict[str, tuple[Trader, str]]:
    return {name: trader_create(username=name, cash=Decimal("1000.00")) for name in ("ann", "ben")}


def connect_as(token: str | None) -> WebsocketCommunicator:
    subprotocols = None if token is None else ["bearer", f"bearer.{token}"]
    return WebsocketCommunicator(application, "/ws/market/", HEADERS, subprotocols=subprotocols)


async def opened(token: str | None) -> WebsocketCommunicator:
    client = connect_as(token)
    connected, _ = await client.connect()
    assert connected
    return client


async def receive(client: WebsocketCommunicator) -> dict[str, Any]:
    text = await client.receive_from(timeout=5)
    assert len(text.encode()) <= MAX_FRAME_BYTES
    frame = json.loads(text)
    FRAMES.validate_python(frame)  # every frame is one the contract (docs/feed-schema.json) describes
    return frame


async def ready(token: str) -> tuple[WebsocketCommunicator, int]:
    client = await opened(token)
    frame = await receive(client)
    assert frame["type"] == "account_ready"
    return client, frame["seq"]


async def publish(trader: Trader, n: int) -> None:
    """As the order path does, in a thread (it may wait for a transaction to commit)."""
    fields = {"id": f"order-{n}", "symbol": "AAA", "quantity": n}
    await sync_to_async(publish_account_event)(trader.pk, "order_filled", fields)


async def events(client: WebsocketCommunicator, count: int) -> list[dict[str, Any]]:
    frames = [await receive(client) for _ in range(count)]
    assert all(f["type"] == "account" for f in frames), frames
    return frames


def test_a_connection_gets_its_own_traders_events_and_never_another_traders(
    traders: dict[str, tuple[Trader, str]],
) -> None:
    (ann, ann_token), (ben, ben_token) = traders["ann"], traders["ben"]

    async def main() -> None:
        ann_socket, ann_seq = await ready(ann_token)
        ben_socket, ben_seq = await ready(ben_token)
        anonymous = await opened(None)
        assert (ann_seq, ben_seq) == (0, 0)
        for n in range(1, 4):
            await publish(ann, n)
        await publish(ben, 99)
        got = await events(ann_socket, 3)
        assert [(f["seq"], f["id"], f["event"]) for f in got] == [(n, f"order-{n}", "order_filled") for n in (1, 2, 3)]
        assert [(f["seq"], f["id"]) for f in await events(ben_socket, 1)] == [(1, "order-99")]
        assert await ann_socket.receive_nothing(timeout=0.3)  # nothing of ben's
        assert await ben_socket.receive_nothing(timeout=0.1)  # nothing of ann's
        assert await anonymous.receive_nothing(timeout=0.1)  # an anonymous connection gets no account events
        for client in (ann_socket, ben_socket, anonymous):
            await client.disconnect()

    asyncio.run(main())


def test_a_reconnecting_client_resumes_after_its_last_event_then_gets_live_ones(
    traders: dict[str, tuple[Trader, str]],
) -> None:
    ann, token = traders["ann"]

    async def main() -> None:
        first, _ = await ready(token)
        await publish(ann, 1)
        await publish(ann, 2)
        assert [f["seq"] for f in await events(first, 2)] == [1, 2]
        await first.disconnect()
        for n in (3, 4, 5):
            await publish(ann, n)  # while away
        second, latest = await ready(token)
        assert latest == 5
        await second.send_to(text_data=json.dumps({"type": "account_resume", "after": 2}))
        assert [f["seq"] for f in await events(second, 3)] == [3, 4, 5]
        await publish(ann, 6)
        assert [f["seq"] for f in await events(second, 1)] == [6]
        await second.send_to(text_data=json.dumps({"type": "account_resume", "after": 6}))  # nothing missed
        assert await second.receive_nothing(timeout=0.3)
        await second.disconnect()

    asyncio.run(main())


@override_settings(ACCOUNT_EVENTS_HISTORY=3)
def test_resuming_from_beyond_the_bounded_history_is_told_as_a_gap(traders: dict[str, tuple[Trader, str]]) -> None:
    ann, token = traders["ann"]

    async def main() -> None:
        for n in range(1, 8):
            await publish(ann, n)
        client, latest = await ready(token)
        assert latest == 7
        await client.send_to(text_data=json.dumps({"type": "account_resume", "after": 1}))
        gap = await receive(client)
        assert gap["type"] == "account_gap" and (gap["after"], gap["next"]) == (1, 5)
        assert [f["seq"] for f in await events(client, 3)] == [5, 6, 7]
        await client.send_to(text_data=json.dumps({"type": "account_resume", "after": 40}))  # numbers from elsewhere
        gap = await receive(client)
        assert gap["type"] == "account_gap" and gap["next"] == 8
        await client.disconnect()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "account_resume"}, "after: Field required"),
        ({"type": "account_resume", "after": -1}, "after: Input should be greater than or equal to 0"),
        ({"type": "account_resume", "after": "3"}, "after: Input should be a valid integer"),
        ({"type": "account_resume", "after": True}, "after: Input should be a valid integer"),
        ({"type": "account_resume", "after": 1.5}, "after: Input should be a valid integer"),
        ({"type": "account_resume", "after": 2**60}, "after: Input should be less than or equal to"),
        ({"type": "account_resume", "after": 1, "seq": 2}, "seq: Extra inputs are not permitted"),
    ],
)
def test_a_bad_resume_message_gets_an_error_frame_naming_the_field(
    traders: dict[str, tuple[Trader, str]], message: dict[str, Any], expected: str
) -> None:
    async def main() -> None:
        client, _ = await ready(traders["ann"][1])
        await client.send_to(text_data=json.dumps(message))
        error = await receive(client)
        assert error["type"] == "error" and error["code"] == "invalid_message"
        assert error["message"].startswith(expected), error
        await client.send_to(text_data=json.dumps({"type": "ping"}))
        assert (await receive(client))["type"] == "pong"  # the connection stays open
        await client.disconnect()

    asyncio.run(main())


def test_an_anonymous_resume_is_refused_by_name(traders: dict[str, tuple[Trader, str]]) -> None:
    async def main() -> None:
        client = await opened(None)
        await client.send_to(text_data=json.dumps({"type": "account_resume", "after": 0}))
        error = await receive(client)
        assert error["type"] == "error" and error["code"] == "not_authenticated"
        assert error["message"].startswith("account_resume:")
        await client.disconnect()

    asyncio.run(main())
