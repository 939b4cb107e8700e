"""The market hub's logic with in-memory sockets and source: routing, batching, conflation, slow readers."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.core.metrics import WS_BATCH_WINDOW
from apps.market.feed.frames import MAX_FRAME_BYTES, update_frames
from apps.market.feed.hub import (
    BASE_WINDOW_SECONDS,
    MAX_WINDOW_SECONDS,
    NARROW_WHEN_PASS_BELOW,
    WIDEN_WHEN_PASS_EXCEEDS,
    MarketHub,
    PassStats,
    SubscriptionUnavailable,
    next_window,
)
from tests.market.feed_fakes import (
    BlockedConnection,
    FakeSource,
    RecordingConnection,
    TimedConnection,
    VirtualTimeLoop,
    encoded_update,
    run_now,
    run_virtual,
)

UNIVERSE = [f"S{n:03d}" for n in range(60)]
tickers = st.sampled_from(UNIVERSE)
prices = st.floats(min_value=0.01, max_value=99_999.99).map(lambda p: round(p, 2))


def new_hub() -> tuple[MarketHub, FakeSource]:
    source = FakeSource()
    return MarketHub(source), source


@settings(max_examples=200)
@given(
    subscriptions=st.lists(st.sets(tickers, max_size=12), min_size=1, max_size=8),
    ticks=st.lists(st.tuples(tickers, prices), max_size=60),
)
def test_each_connection_receives_exactly_the_latest_update_of_its_changed_symbols(
    subscriptions: list[set[str]], ticks: list[tuple[str, float]]
) -> None:
    """Feature: trading-performance-optimization, Property 5: For any stock price update and client subscription set, only clients subscribed to that specific symbol should receive the update"""  # noqa: E501
    hub, _ = new_hub()
    connections = [RecordingConnection() for _ in subscriptions]
    for connection, symbols in zip(connections, subscriptions, strict=True):
        run_now(hub.watch(connection, symbols))
    latest: dict[str, float] = {}
    for symbol, price in ticks:
        hub.deliver(symbol, encoded_update(symbol, price))
        latest[symbol] = price
    hub.flush()
    for connection, symbols in zip(connections, subscriptions, strict=True):
        received = {update["symbol"]: update["price"] for update in connection.updates()}
        assert received == {s: p for s, p in latest.items() if s in symbols}
        assert len(connection.updates()) == len(received)  # one update per symbol: conflated


WINDOWS = 10
tick_times = st.integers(0, WINDOWS * 100 - 1).map(lambda ms: (ms + 0.5) / 1000)  # never on a window's edge


@settings(max_examples=100, deadline=None)
@given(
    subscriptions=st.lists(st.sets(tickers, min_size=1, max_size=60), min_size=1, max_size=5),
    ticks=st.lists(st.tuples(tick_times, tickers, prices), max_size=300),
)
def test_the_hubs_own_loop_sends_each_windows_updates_as_one_batch_at_the_windows_end(
    subscriptions: list[set[str]], ticks: list[tuple[float, str, float]]
) -> None:
    """Feature: trading-performance-optimization, Property 6: For any sequence of rapid price updates within 100ms, the WebSocket service should batch them into a single message — the hub's own send loop on a fake clock: whatever ticks arrive at whatever moments, each connection gets one batch per 100 ms window that changed any of its symbols, sent when the window ends, holding the window's latest price of each of those symbols (split into frames of at most 1 KB that share the batch id when it is larger)."""  # noqa: E501

    # Ticks at one instant still come one after another: keep the generated order (0.1 µs apart).
    ticks = [(moment + index * 1e-7, symbol, price) for index, (moment, symbol, price) in enumerate(ticks)]

    async def scenario() -> list[TimedConnection]:
        loop = asyncio.get_running_loop()
        hub = MarketHub(FakeSource(), clock=loop.time)
        connections = [TimedConnection() for _ in subscriptions]
        for connection, symbols in zip(connections, subscriptions, strict=True):
            await hub.watch(connection, symbols)
        hub.start()
        for moment, symbol, price in ticks:
            loop.call_at(moment, hub.deliver, symbol, encoded_update(symbol, price))
        await asyncio.sleep(WINDOWS * BASE_WINDOW_SECONDS + 0.05)
        await hub.close()
        return connections

    connections = run_virtual(scenario())
    for connection, symbols in zip(connections, subscriptions, strict=True):
        expected: dict[int, dict[str, float]] = {}
        for moment, symbol, price in sorted(ticks, key=lambda tick: tick[0]):
            if symbol in symbols:
                expected.setdefault(int(moment * 10), {})[symbol] = price
        batches: dict[int, list[tuple[float, dict[str, object]]]] = {}
        for sent_at, frame in zip(connection.sent_at, connection.decoded(), strict=True):
            batches.setdefault(frame["batchId"], []).append((sent_at, frame))
        assert all(len(frame.encode()) <= MAX_FRAME_BYTES for frame in connection.frames)
        received: dict[int, dict[str, float]] = {}
        for parts in batches.values():
            (sent_at,) = {round(at, 6) for at, _ in parts}  # a batch goes out at one moment
            window = round(sent_at * 10) - 1  # sent as window `window` ends
            assert sent_at == pytest.approx((window + 1) * BASE_WINDOW_SECONDS)
            assert window not in received, "two batches in one window"
            received[window] = {u["symbol"]: u["price"] for _, frame in parts for u in frame["updates"]}
            assert sum(len(frame["updates"]) for _, frame in parts) == len(received[window])
        assert received == expected


@settings(max_examples=100)
@given(subscriptions=st.lists(st.sets(tickers, min_size=1), min_size=1, max_size=6), price=prices)
def test_frames_of_a_pass_stay_within_one_kilobyte_even_when_every_symbol_changed(
    subscriptions: list[set[str]], price: float
) -> None:
    """Feature: trading-performance-optimization, Property 23: For any WebSocket message, the size should not exceed 1KB"""  # noqa: E501
    hub, _ = new_hub()
    connections = [RecordingConnection() for _ in subscriptions]
    for connection, symbols in zip(connections, subscriptions, strict=True):
        run_now(hub.watch(connection, symbols))
    for symbol in UNIVERSE:
        hub.deliver(symbol, encoded_update(symbol, price))
    hub.flush()
    for connection, symbols in zip(connections, subscriptions, strict=True):
        assert all(len(frame.encode()) <= MAX_FRAME_BYTES for frame in connection.frames)
        assert {u["symbol"] for u in connection.updates()} == symbols
        assert len({frame["batchId"] for frame in connection.decoded()}) == 1  # split parts share the batch


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    universe_size=st.integers(100, 500),
    clients=st.integers(20, 200),
    windows=st.integers(1, 5),
)
def test_selective_delivery_uses_at_least_80_percent_less_bandwidth_than_broadcast_all(
    seed: int, universe_size: int, clients: int, windows: int
) -> None:
    """Feature: trading-performance-optimization, Property 39: For any WebSocket communication pattern, selective broadcasting should reduce bandwidth usage by 80% compared to broadcast-all

    Patterns as the product sees them: each client watches a random 2 % of the symbols (the benchmark's 10 of
    500), ticks fall on random symbols at the simulator's 50 per 100 ms window."""  # noqa: E501
    rng = random.Random(seed)
    universe = [f"T{n:03d}" for n in range(universe_size)]
    hub, _ = new_hub()
    connections = [RecordingConnection() for _ in range(clients)]
    for connection in connections:
        run_now(hub.watch(connection, rng.sample(universe, max(1, universe_size // 50))))
    broadcast_bytes = 0
    for window in range(windows):
        changed: dict[str, str] = {}
        for _ in range(50):
            symbol = rng.choice(universe)
            changed[symbol] = encoded_update(symbol, round(rng.uniform(1, 1000), 2))
            hub.deliver(symbol, changed[symbol])
        hub.flush()
        frames = update_frames(list(changed.values()), timestamp=1_700_000_000_000, batch_id=window)
        broadcast_bytes += clients * sum(len(frame) for frame in frames)
    selective_bytes = sum(len(frame) for connection in connections for frame in connection.frames)
    assert selective_bytes <= 0.2 * broadcast_bytes


def test_first_interest_subscribes_a_symbol_once_and_the_last_unsubscribes_it() -> None:
    hub, source = new_hub()
    first, second = RecordingConnection(), RecordingConnection()
    run_now(hub.watch(first, ["AAA", "BBB"]))
    run_now(hub.watch(second, ["BBB", "CCC"]))
    assert source.subscribe_calls == [["AAA", "BBB"], ["CCC"]]
    run_now(hub.unwatch(first, None))
    assert source.unsubscribe_calls == [["AAA"]]
    run_now(hub.detach(second))
    assert sorted(source.unsubscribe_calls[1]) == ["BBB", "CCC"]
    assert source.subscribed == set()
    assert hub.subscribed_symbols == frozenset()


def test_an_update_arriving_after_the_last_unsubscribe_is_ignored() -> None:
    hub, _ = new_hub()
    connection = RecordingConnection()
    run_now(hub.watch(connection, ["AAA"]))
    run_now(hub.unwatch(connection, ["AAA"]))
    hub.deliver("AAA", encoded_update("AAA", 1.0))
    hub.flush()
    assert connection.frames == []


def test_connections_with_the_same_changed_symbols_share_one_encoded_frame() -> None:
    hub, _ = new_hub()
    connections = [RecordingConnection() for _ in range(3)]
    for connection in connections:
        run_now(hub.watch(connection, ["AAA", "BBB"]))
    hub.deliver("AAA", encoded_update("AAA", 1.0))
    stats = hub.flush()
    assert stats.connections == 3 and stats.frames == 3
    assert connections[0].frames[0] is connections[1].frames[0] is connections[2].frames[0]


def test_a_pass_without_changes_sends_nothing() -> None:
    hub, _ = new_hub()
    connection = RecordingConnection()
    run_now(hub.watch(connection, ["AAA"]))
    hub.deliver("AAA", encoded_update("AAA", 1.0))
    hub.flush()
    hub.flush()
    assert len(connection.frames) == 1


def test_a_slow_reader_neither_stalls_the_pass_nor_queues_more_than_the_latest_price_per_symbol() -> None:
    async def scenario() -> None:
        hub, _ = new_hub()
        slow, fast = BlockedConnection(), RecordingConnection()
        await hub.watch(slow, ["AAA", "BBB"])
        await hub.watch(fast, ["AAA", "BBB"])
        for price in range(1, 101):  # 100 windows while the slow reader reads nothing
            hub.deliver("AAA", encoded_update("AAA", float(price)))
            hub.deliver("BBB", encoded_update("BBB", float(price)))
            stats = hub.flush()
            await asyncio.sleep(0)
        assert len(fast.frames) == 100  # never held up by the slow one
        assert stats.skipped_busy == 1
        assert all(frame["type"] == "stock_updates" for frame in fast.decoded())  # it kept up: no notice
        slow.release()
        await until(lambda: len(slow.frames) == 1 and not hub._watchers[slow].sending)  # its first frame (price 1)
        hub.flush()  # then the newest prices, nothing in between, told that the rest was replaced
        await until(lambda: len(slow.frames) == 3)
        sent = slow.decoded()
        assert {u["price"] for u in sent[0]["updates"]} == {1.0}
        assert sent[1]["type"] == "notice" and sent[1]["code"] == "updates_conflated"
        assert "196 update(s)" in sent[1]["message"]  # prices 3..100 of each symbol each replaced a pending one
        assert {u["price"] for u in sent[2]["updates"]} == {100.0}
        await hub.close()

    asyncio.run(scenario())


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the loop until `condition` holds (failing after `timeout` seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "gave up waiting"
        await asyncio.sleep(0)


@settings(max_examples=100, deadline=None)
@given(
    episodes=st.lists(
        st.tuples(st.integers(0, 6), st.lists(st.lists(st.tuples(tickers, prices), max_size=6), max_size=5)),
        min_size=1,
        max_size=4,
    )
)
def test_a_connection_whose_updates_are_conflated_is_told_once_per_episode_with_a_notice_frame(
    episodes: list[tuple[int, list[list[tuple[str, float]]]]],
) -> None:
    """Queue overflow: a reader that falls behind gets a notice frame before its newest prices, once an episode;
    a reader that keeps up never gets one."""

    async def scenario() -> None:
        hub, _ = new_hub()
        slow, fast = BlockedConnection(), RecordingConnection()
        await hub.watch(slow, UNIVERSE)
        await hub.watch(fast, UNIVERSE)
        for first_price, windows in episodes:
            slow.gate.clear()
            hub.deliver(UNIVERSE[0], encoded_update(UNIVERSE[0], float(first_price)))
            hub.flush()  # the slow reader's send starts and blocks
            replaced = 0
            pending: set[str] = set()
            for ticks in windows:
                for symbol, price in ticks:
                    hub.deliver(symbol, encoded_update(symbol, price))
                changed = {symbol for symbol, _ in ticks}
                replaced += len(changed & pending)  # a pending update of a symbol that changed again
                pending |= changed
                hub.flush()
            before = len(slow.frames)
            slow.release()
            await until(lambda: not hub._watchers[slow].sending)
            hub.flush()  # what it missed, in one go
            await until(lambda: not hub._watchers[slow].sending)
            received = slow.decoded()[before:]
            notices = [frame for frame in received if frame["type"] == "notice"]
            if replaced:
                assert len(notices) == 1 and notices[0]["code"] == "updates_conflated"
                assert f" {replaced} update(s)" in notices[0]["message"]
                assert received[1]["type"] == "notice"  # after the frame in flight, before the newest prices
            else:
                assert notices == []
            assert all(len(frame) <= MAX_FRAME_BYTES for frame in slow.frames)
        assert all(frame["type"] == "stock_updates" for frame in fast.decoded())
        await hub.close()

    asyncio.run(scenario())


def test_memory_shedding_drops_a_slow_readers_pending_updates_and_tells_it() -> None:
    async def scenario() -> None:
        hub, _ = new_hub()
        slow = BlockedConnection()
        await hub.watch(slow, ["AAA", "BBB"])
        hub.deliver("AAA", encoded_update("AAA", 1.0))
        hub.flush()
        hub.deliver("BBB", encoded_update("BBB", 2.0))
        hub.flush()
        assert hub.shed() == 1  # BBB's pending price is dropped
        slow.release()
        await until(lambda: not hub._watchers[slow].sending)
        hub.deliver("AAA", encoded_update("AAA", 3.0))
        hub.flush()
        await until(lambda: len(slow.frames) == 3)
        assert [frame["type"] for frame in slow.decoded()] == ["stock_updates", "notice", "stock_updates"]
        await hub.close()

    asyncio.run(scenario())


def test_a_send_that_fails_does_not_break_the_pass_for_others() -> None:
    class ClosedConnection(RecordingConnection):
        async def send_frame(self, text: str) -> None:
            raise RuntimeError("socket closed")

    hub, _ = new_hub()
    closed, open_ = ClosedConnection(), RecordingConnection()
    run_now(hub.watch(closed, ["AAA"]))
    run_now(hub.watch(open_, ["AAA"]))
    hub.deliver("AAA", encoded_update("AAA", 1.0))
    hub.flush()
    assert len(open_.frames) == 1


@settings(max_examples=200)
@given(
    window=st.floats(BASE_WINDOW_SECONDS, MAX_WINDOW_SECONDS),
    pass_seconds=st.floats(0, 5),
)
def test_the_batch_window_widens_under_load_and_stays_between_100_ms_and_one_second(
    window: float, pass_seconds: float
) -> None:
    widened = next_window(window, pass_seconds)
    assert BASE_WINDOW_SECONDS <= widened <= MAX_WINDOW_SECONDS
    if pass_seconds > window * WIDEN_WHEN_PASS_EXCEEDS:
        assert widened >= window
    if pass_seconds < window * NARROW_WHEN_PASS_BELOW:
        assert widened <= window
    if pass_seconds > window:
        assert widened > window or widened == MAX_WINDOW_SECONDS


def test_the_send_loop_flushes_once_per_window() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        hub = MarketHub(FakeSource(), clock=loop.time)
        connection = RecordingConnection()
        await hub.watch(connection, ["AAA"])
        hub.start()
        for price in range(1, 6):
            hub.deliver("AAA", encoded_update("AAA", float(price)))
            await asyncio.sleep(0.002)  # five ticks well inside one 100 ms window (virtual time)
        await asyncio.sleep(0.15)
        await hub.close()
        return [u["price"] for u in connection.updates()]

    assert run_virtual(scenario()) == [5.0]


def test_update_frames_are_compact_json_with_the_documented_fields() -> None:
    (frame,) = update_frames([encoded_update("AAA", 12.5)], timestamp=5, batch_id=7)
    assert json.loads(frame) == {
        "type": "stock_updates",
        "updates": [json.loads(encoded_update("AAA", 12.5))],
        "timestamp": 5,
        "batchId": 7,
    }


def test_a_subscription_redis_refuses_leaves_nothing_behind() -> None:
    class RefusingSource(FakeSource):
        async def subscribe(self, symbols: list[str]) -> None:
            raise ConnectionError("redis is down")

    hub = MarketHub(RefusingSource())
    connection = RecordingConnection()
    with pytest.raises(SubscriptionUnavailable):
        run_now(hub.watch(connection, ["AAA", "BBB"]))
    assert hub.symbols_of(connection) == frozenset()
    assert hub.subscribed_symbols == frozenset()


def test_a_send_pass_that_overruns_its_window_widens_the_window_and_says_so_in_the_metric() -> None:
    async def scenario() -> MarketHub:
        loop = asyncio.get_running_loop()
        hub = MarketHub(FakeSource(), clock=loop.time)

        def overrunning_flush() -> PassStats:
            assert isinstance(loop, VirtualTimeLoop)
            loop.now += 0.09  # the pass takes 90 % of the 100 ms window
            return PassStats()

        hub.flush = overrunning_flush  # type: ignore[method-assign]
        hub.start()
        await asyncio.sleep(0.15)  # the first pass runs after one window
        await hub.close()
        return hub

    hub = run_virtual(scenario())
    assert hub.window > BASE_WINDOW_SECONDS
    assert WS_BATCH_WINDOW._value.get() == hub.window


@settings(max_examples=100, deadline=None)
@given(
    symbols=st.sets(tickers, min_size=1, max_size=20),
    windows=st.lists(st.lists(st.tuples(tickers, prices), max_size=30), min_size=1, max_size=30),
)
def test_a_reader_that_never_reads_holds_at_most_one_pending_update_per_subscribed_symbol(
    symbols: set[str], windows: list[list[tuple[str, float]]]
) -> None:
    async def scenario() -> None:
        hub, _ = new_hub()
        stuck = BlockedConnection()
        await hub.watch(stuck, symbols)
        for ticks in windows:
            for symbol, price in ticks:
                hub.deliver(symbol, encoded_update(symbol, price))
            hub.flush()
            pending = hub._watchers[stuck].dirty
            assert pending <= symbols  # bounded by the subscriptions, however many windows pass
        assert len(hub._tasks) <= 1  # one send in flight, never a queue of them
        await hub.close()

    asyncio.run(scenario())


def test_a_connection_whose_socket_takes_nothing_for_the_stall_bound_is_forgotten_and_closed() -> None:
    async def scenario() -> tuple[MarketHub, BlockedConnection, RecordingConnection, float]:
        loop = asyncio.get_running_loop()
        hub = MarketHub(FakeSource(), clock=loop.time, stall_seconds=10.0)
        silent, reader = BlockedConnection(), RecordingConnection()
        await hub.watch(silent, ["AAA", "BBB"])
        await hub.watch(reader, ["AAA"])
        hub.start()
        started = loop.time()
        price = 1.0
        while hub.symbols_of(silent) and loop.time() - started < 60:
            price += 1
            hub.deliver("AAA", encoded_update("AAA", price))
            hub.deliver("BBB", encoded_update("BBB", price))
            await asyncio.sleep(0.05)
        closed_after = loop.time() - started
        await hub.close()
        return hub, silent, reader, closed_after

    hub, silent, reader, closed_after = run_virtual(scenario())
    assert silent.closed_stalled and not reader.closed_stalled
    assert 10.0 <= closed_after <= 10.0 + 2 * BASE_WINDOW_SECONDS  # the bound, not the keepalive's ~40 s
    assert hub.subscribed_symbols == frozenset({"AAA"})  # BBB had no one else: unsubscribed at once
    assert len(reader.frames) >= 100  # the reader was served every window throughout


def test_a_slow_send_that_completes_within_the_stall_bound_keeps_the_connection() -> None:
    async def scenario() -> tuple[BlockedConnection, MarketHub]:
        loop = asyncio.get_running_loop()
        hub = MarketHub(FakeSource(), clock=loop.time, stall_seconds=10.0)
        slow = BlockedConnection()
        await hub.watch(slow, ["AAA"])
        hub.start()
        hub.deliver("AAA", encoded_update("AAA", 1.0))
        await asyncio.sleep(9.0)  # virtual: the send has waited 9 s of its 10
        slow.release()
        hub.deliver("AAA", encoded_update("AAA", 2.0))
        await asyncio.sleep(1.0)
        await hub.close()
        return slow, hub

    slow, hub = run_virtual(scenario())
    assert not slow.closed_stalled and hub.symbols_of(slow) == frozenset({"AAA"})
    assert [u["price"] for u in slow.updates()] == [1.0, 2.0]
