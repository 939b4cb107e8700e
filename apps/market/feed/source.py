"""Where the hub's updates come from: one Redis pub/sub subscription per wanted symbol (Property 5)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from apps.core.redis import async_redis_client
from apps.market.feed.publish import SymbolChannel

logger = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 1.0


class SymbolSource(Protocol):
    """Where updates come from: subscribe and unsubscribe symbols; `run` delivers updates until cancelled."""

    async def subscribe(self, symbols: list[str]) -> None: ...

    async def unsubscribe(self, symbols: list[str]) -> None: ...

    async def run(self, deliver: Callable[[str, str], None]) -> None: ...


class RedisSymbolSource:
    """Updates from the Redis pub/sub channels `stage_publish` publishes on: one subscription per symbol,
    all on one connection of the process's bounded pool (Property 8)."""

    def __init__(self) -> None:
        self._client = async_redis_client()
        self._pubsub = self._client.pubsub()
        self._prefix = SymbolChannel.name("")
        self._subscribed = asyncio.Event()
        # One command at a time: concurrent first commands would each take a pool connection for the one
        # pub/sub connection (and exhaust the pool), and a subscribe must not overtake an earlier unsubscribe.
        self._commands = asyncio.Lock()

    async def subscribe(self, symbols: list[str]) -> None:
        async with self._commands:
            await self._pubsub.subscribe(*(SymbolChannel.name(s) for s in symbols))
        self._subscribed.set()

    async def unsubscribe(self, symbols: list[str]) -> None:
        async with self._commands:
            await self._pubsub.unsubscribe(*(SymbolChannel.name(s) for s in symbols))

    async def run(self, deliver: Callable[[str, str], None]) -> None:
        prefix_length = len(self._prefix)
        try:
            while True:
                await self._subscribed.wait()
                try:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except Exception:  # a lost connection, or anything else: the feed must outlive it
                    # redis-py reconnects and resubscribes every channel on the next read
                    logger.warning("feed: reading Redis pub/sub failed; retrying", exc_info=True)
                    await asyncio.sleep(REDIS_RETRY_SECONDS)
                    continue
                if message is not None and message["type"] == "message":
                    deliver(message["channel"].decode()[prefix_length:], message["data"].decode())
        finally:
            await self._pubsub.aclose()
            await self._client.aclose()
