"""The hub's Redis side: per-symbol pub/sub subscriptions on the project's bounded pool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError

from apps.core.redis import redis_client
from apps.market.feed.hub import RedisSymbolSource
from apps.market.feed.publish import SymbolChannel, stage_publish
from apps.market.ticks import Tick


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait for `condition` (checked every millisecond), failing after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        await asyncio.sleep(0.001)


def subscribers(symbol: str) -> int:
    return int(redis_client().pubsub_numsub(SymbolChannel.name(symbol))[0][1])


symbol_batches = st.lists(st.lists(st.sampled_from([f"P{n}" for n in range(30)]), min_size=1, max_size=10), max_size=8)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subscribes=symbol_batches, unsubscribes=symbol_batches)
def test_the_feed_holds_its_redis_connections_within_the_bounded_pool(
    subscribes: list[list[str]], unsubscribes: list[list[str]]
) -> None:
    """Feature: trading-performance-optimization, Property 8: For any Redis connection pool state, the number of connections should be between 5 and 20 inclusive"""  # noqa: E501

    async def scenario() -> None:
        source = RedisSymbolSource()
        pool = source._client.connection_pool
        try:
            await asyncio.gather(
                *(source.subscribe(batch) for batch in subscribes),
                *(source.unsubscribe(batch) for batch in unsubscribes),
            )
            assert 5 <= pool.max_connections <= 20
            held = len(pool._available_connections) + len(pool._in_use_connections)
            assert held <= pool.max_connections
        finally:
            await source._pubsub.aclose()
            await source._client.aclose()

    asyncio.run(scenario())


def test_the_source_delivers_the_ticks_of_subscribed_symbols_and_stops_after_unsubscribing() -> None:
    async def scenario() -> None:
        source = RedisSymbolSource()
        delivered: list[tuple[str, str]] = []
        reader = asyncio.ensure_future(source.run(lambda symbol, update: delivered.append((symbol, update))))
        await source.subscribe(["ONE", "TWO"])
        await eventually(lambda: subscribers("ONE") == subscribers("TWO") == 1, "Redis to hold both subscriptions")
        pipe = redis_client().pipeline()
        stage_publish(pipe, [Tick(s, 1.5, 1.0, 1, 1) for s in ("ONE", "TWO", "THREE")])
        pipe.execute()
        await eventually(lambda: len(delivered) >= 2, "both ticks to arrive")
        assert [symbol for symbol, _ in delivered] == ["ONE", "TWO"]
        assert '"price":1.5' in delivered[0][1]
        await source.unsubscribe(["ONE", "TWO"])
        await eventually(lambda: subscribers("ONE") == subscribers("TWO") == 0, "Redis to drop both subscriptions")
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    asyncio.run(scenario())


def test_the_source_keeps_delivering_after_a_failed_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("apps.market.feed.source.REDIS_RETRY_SECONDS", 0.01)

    async def scenario() -> None:
        source = RedisSymbolSource()
        read = source._pubsub.get_message
        failures = [RedisConnectionError("connection reset")]

        async def flaky_read(**options: Any) -> Any:
            if failures:
                raise failures.pop()
            return await read(**options)

        source._pubsub.get_message = flaky_read  # type: ignore[method-assign]
        delivered: list[str] = []
        reader = asyncio.ensure_future(source.run(lambda symbol, update: delivered.append(symbol)))
        await source.subscribe(["ONE"])
        await eventually(lambda: subscribers("ONE") == 1 and not failures, "the subscription and the failed read")
        pipe = redis_client().pipeline()
        stage_publish(pipe, [Tick("ONE", 1.5, 1.0, 1, 1)])
        pipe.execute()
        await eventually(lambda: bool(delivered), "the tick after the failed read")
        assert delivered == ["ONE"] and failures == []
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    asyncio.run(scenario())
