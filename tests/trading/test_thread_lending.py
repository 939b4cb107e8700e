"""The lean API handler lends each request one thread for its sync work, from a pool, instead of making one."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from trading.handlers import ThreadLending

SCOPE = {"type": "http", "path": "/api/v1/me", "headers": []}


def handler_recording(threads: list[tuple[str, int]], both_inside: asyncio.Barrier | None = None) -> ThreadLending:
    handler = ThreadLending([])

    async def handle(scope: dict[str, Any], receive: Any, send: Any) -> None:
        first = await sync_to_async(threading.get_ident)()
        if both_inside is not None:
            await both_inside.wait()  # two requests at once
        second = await sync_to_async(threading.get_ident)()
        assert first == second  # one thread a request, as Django's thread-sensitive mode means
        threads.append((scope["path"], first))

    handler.handle = handle  # type: ignore[method-assign]
    return handler


def test_a_later_request_is_served_by_the_thread_an_earlier_one_returned() -> None:
    threads: list[tuple[str, int]] = []
    handler = handler_recording(threads)

    async def two_in_turn() -> None:
        await handler(SCOPE, None, None)
        await handler({**SCOPE, "path": "/api/v1/portfolio"}, None, None)

    asyncio.run(two_in_turn())
    assert threads[0][1] == threads[1][1] and threads[0][1] != threading.get_ident()
    assert len(handler._idle) == 1


def test_requests_at_once_each_have_a_thread_of_their_own() -> None:
    threads: list[tuple[str, int]] = []

    async def two_at_once() -> ThreadLending:
        handler = handler_recording(threads, asyncio.Barrier(2))
        await asyncio.gather(handler(SCOPE, None, None), handler({**SCOPE, "path": "/api/v1/orders"}, None, None))
        return handler

    handler = asyncio.run(two_at_once())
    assert len({thread for _, thread in threads}) == 2
    assert len(handler._idle) == 2  # both threads kept for later requests


def test_a_request_that_fails_still_returns_its_thread() -> None:
    handler = ThreadLending([])

    async def handle(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await sync_to_async(threading.get_ident)()
        raise RuntimeError("the view failed")

    handler.handle = handle  # type: ignore[method-assign]

    with pytest.raises(RuntimeError):
        asyncio.run(handler(SCOPE, None, None))
    assert len(handler._idle) == 1


def test_the_pool_keeps_at_most_max_idle_threads() -> None:
    """A burst (orders awaiting the engine hold their threads) must not leave its threads behind for good."""
    threads: list[tuple[str, int]] = []

    async def two_at_once() -> ThreadLending:
        handler = handler_recording(threads, asyncio.Barrier(2))
        handler.max_idle = 1
        await asyncio.gather(handler(SCOPE, None, None), handler({**SCOPE, "path": "/api/v1/orders"}, None, None))
        return handler

    handler = asyncio.run(two_at_once())
    assert len({thread for _, thread in threads}) == 2 and len(handler._idle) == 1
