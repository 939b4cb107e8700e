import io
import itertools
import json
from decimal import Decimal
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core.metrics import SIMULATOR_BACKPRESSURE
from apps.core.redis import redis_client
from apps.market.feed.publish import SymbolChannel
from apps.market.quotes import latest_quotes
from apps.market.ring import ring_key
from apps.market.simulator import (
    MarketSimulator,
    RecordingError,
    RedisTickSink,
    SymbolSpec,
    TickRecorder,
    TickRunner,
    read_recording,
    replay_schedule,
)
from apps.market.stream import decode_entry, entry_text, stream_key
from apps.market.ticks import Tick
from apps.market.universe import generate_universe
from tests.market.engine_fakes import DrainingStream, FakeClock, constant_rate, numbered_ticks

UNIVERSE = [SymbolSpec(c.ticker, c.sector, c.initial_price) for c in generate_universe(40, seed=1)]


def sequence(seed: int, count: int) -> list[tuple[str, float, float, int]]:
    simulator = MarketSimulator(UNIVERSE, seed=seed)
    return [(t.symbol, t.price, t.previous_close, t.volume) for t in (simulator.next_tick() for _ in range(count))]


def test_the_same_seed_gives_the_same_ticks_and_another_seed_does_not() -> None:
    assert sequence(5, 2000) == sequence(5, 2000)
    assert sequence(5, 2000) != sequence(6, 2000)


def test_every_symbol_ticks_in_turn_on_the_cent_grid_with_growing_volume() -> None:
    ticks = sequence(1, 4000)
    assert [t[0] for t in ticks[:40]] == [s.ticker for s in UNIVERSE]
    for symbol, price, previous_close, _ in ticks:
        assert price >= 0.01 and Decimal(repr(price)) == Decimal(repr(price)).quantize(Decimal("0.01"))
        assert previous_close == float(next(s.initial_price for s in UNIVERSE if s.ticker == symbol))
    volumes = [t[3] for t in ticks if t[0] == UNIVERSE[0].ticker]
    assert volumes == sorted(volumes) and volumes[0] > 0


@hypothesis_settings(max_examples=100)
@given(seed=st.integers(0, 2**32), price=st.decimals("0.01", "5", places=2))
def test_prices_never_reach_zero_even_for_penny_stocks(seed: int, price: Decimal) -> None:
    simulator = MarketSimulator([SymbolSpec("PENNY", "energy", price)], seed=seed)
    assert all(simulator.next_tick().price >= 0.01 for _ in range(300))


def test_the_simulator_needs_symbols() -> None:
    with pytest.raises(ValueError, match="at least one symbol"):
        MarketSimulator([], seed=1)


def test_the_runner_keeps_the_rate_and_stamps_server_time() -> None:
    clock = FakeClock()
    stream = DrainingStream(clock, drain_per_second=10_000)
    runner = TickRunner(
        stream, backlog_limit=10_000, clock=clock, sleep=clock.sleep, now_ms=lambda: int(clock() * 1000)
    )
    stats = runner.run(constant_rate(200), duration=10)
    assert 1990 <= stats.ticks <= 2010
    assert [tick.volume for _, tick in stream.delivered] == list(range(stats.ticks))  # in order, none missing
    assert len({tick_id for tick_id, _ in stream.delivered}) == stats.ticks
    assert all(tick.timestamp > 0 for _, tick in stream.delivered)
    assert stats.batches <= 10 / TickRunner.BATCH_INTERVAL + 1


@hypothesis_settings(max_examples=100, deadline=None)
@given(
    rate=st.integers(100, 2000),
    drain=st.integers(10, 2000),
    limit=st.integers(50, 1500),
    duration=st.floats(1, 8),
)
def test_the_simulator_slows_down_for_the_persister_and_never_drops_a_tick(
    rate: int, drain: int, limit: int, duration: float
) -> None:
    """Feature: trading-performance-optimization, Property 9: For any message queue that exceeds capacity thresholds, the system should apply backpressure to prevent overflow"""  # noqa: E501
    clock = FakeClock()
    stream = DrainingStream(clock, drain_per_second=drain)
    runner = TickRunner(stream, backlog_limit=limit, clock=clock, sleep=clock.sleep)
    stats = runner.run(constant_rate(rate), duration=duration)
    largest_batch = rate * TickRunner.BATCH_INTERVAL + 1
    assert stream.max_entries <= limit + largest_batch  # bounded: at most one batch past the limit
    assert [tick.volume for _, tick in stream.delivered] == list(range(stats.ticks))  # nothing dropped or reordered
    if rate * duration > 2 * (limit + largest_batch) + drain * duration:
        assert stats.throttled_seconds > 0


def test_backpressure_is_reported_in_a_metric_and_logged_once_per_transition(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    stream = DrainingStream(clock, drain_per_second=50)
    runner = TickRunner(stream, backlog_limit=100, clock=clock, sleep=clock.sleep)
    seen: list[float] = []
    original = runner.gate.observe

    def observe(backlog: int) -> bool:
        throttled = original(backlog)
        seen.append(SIMULATOR_BACKPRESSURE._value.get())
        return throttled

    runner.gate.observe = observe  # type: ignore[method-assign]
    with caplog.at_level("INFO", logger="apps.market.simulator"):
        runner.run(constant_rate(500), duration=3)
    assert 1.0 in seen and 0.0 in seen
    on = [r for r in caplog.records if "backpressure on" in r.message]
    off = [r for r in caplog.records if "backpressure off" in r.message]
    assert on and abs(len(on) - len(off)) <= 1
    assert len(on) < runner.stats.batches


def test_one_batch_is_one_round_trip_writing_quote_ring_feed_and_stream() -> None:
    client = redis_client()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(SymbolChannel.name("AAA"))
    ticks = numbered_ticks(6, symbols=["AAA", "BBB"])
    sink = RedisTickSink()
    calls: list[int] = []
    real_pipeline = client.pipeline

    def counting_pipeline(*args, **kwargs):  # type: ignore[no-untyped-def]
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute
        pipe.execute = lambda *a, **k: calls.append(len(pipe.command_stack)) or real_execute(*a, **k)  # type: ignore[method-assign]
        return pipe

    client.pipeline = counting_pipeline  # type: ignore[method-assign]
    try:
        backlog = sink.write(ticks)
    finally:
        del client.pipeline
    assert len(calls) == 1
    assert backlog == 6 == client.xlen(stream_key())
    assert latest_quotes(["AAA", "BBB"])["AAA"]["price"] == ticks[4][1].price  # the newest AAA tick
    assert client.llen(ring_key("BBB")) == 3
    published = [message for message in (pubsub.get_message(timeout=1) for _ in range(6)) if message]
    assert [json.loads(m["data"])["price"] for m in published] == [t.price for _, t in ticks if t.symbol == "AAA"]
    entries: Any = client.xrange(stream_key())
    assert [decode_entry(fields) for _, fields in entries] == ticks
    pubsub.close()


def test_a_batch_is_retried_not_dropped_while_redis_is_unreachable() -> None:
    clock = FakeClock()
    stream = DrainingStream(clock, drain_per_second=1000)
    failures = iter([True, True, False] + [False] * 10_000)
    real_write = stream.write

    def flaky_write(numbered):  # type: ignore[no-untyped-def]
        if next(failures):
            raise redis.ConnectionError("connection refused")
        return real_write(numbered)

    stream.write = flaky_write  # type: ignore[method-assign]
    runner = TickRunner(stream, backlog_limit=10_000, clock=clock, sleep=clock.sleep)
    stats = runner.run(itertools.islice(constant_rate(100), 50))
    assert stats.ticks == 50 == len(stream.delivered)


def test_a_recording_replays_the_same_ticks_in_the_same_order() -> None:
    clock = FakeClock()
    recorded_stream = DrainingStream(clock, drain_per_second=10_000)
    file = io.StringIO()
    simulator = MarketSimulator(UNIVERSE, seed=9)
    TickRunner(recorded_stream, backlog_limit=10_000, clock=clock, sleep=clock.sleep).run(
        simulator.paced(300), duration=2, on_batch=TickRecorder(file)
    )
    replayed_stream = DrainingStream(clock, drain_per_second=10_000)
    started = clock()
    replay = replay_schedule(read_recording(io.StringIO(file.getvalue())), speed=2)
    TickRunner(replayed_stream, backlog_limit=10_000, clock=clock, sleep=clock.sleep).run(replay)

    def shape(stream: DrainingStream) -> list[tuple[str, float, int]]:
        return [(t.symbol, t.price, t.volume) for _, t in stream.delivered]

    assert shape(replayed_stream) == shape(recorded_stream) and 600 <= len(shape(recorded_stream)) <= 620
    assert clock() - started == pytest.approx(1.0, abs=0.1)  # twice as fast
    assert {i for i, _ in replayed_stream.delivered}.isdisjoint({i for i, _ in recorded_stream.delivered})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: not a tick recording"),
        ('{"recording": "trading-ticks", "version": 1}\n{"offset": 0, "symbol": "A"}\n', "line 2: not a recorded tick"),
        (
            '{"recording": "trading-ticks", "version": 1}\n'
            '{"offset": 1, "symbol": "A", "price": 1, "previous_close": 1, "volume": 1}\n'
            '{"offset": 0.5, "symbol": "A", "price": 1, "previous_close": 1, "volume": 1}\n',
            "line 3: offset 0.5 goes back",
        ),
        (
            '{"recording": "trading-ticks", "version": 1}\n'
            '{"offset": 1, "symbol": "A", "price": -1, "previous_close": 1, "volume": 1}\n',
            "line 2: offset, prices and volume",
        ),
    ],
)
def test_a_broken_recording_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        list(read_recording(io.StringIO(text)))


def test_a_stream_entry_is_one_field_and_older_six_field_entries_still_decode() -> None:
    tick = Tick("ODD|SYM", 101.25, 100.5, 4_200, 1_780_000_000_123)
    assert decode_entry({b"t": entry_text("run-0000000007", tick).encode()}) == ("run-0000000007", tick)
    older = {b"tick_id": b"run-0000000007", **{k.encode(): v.encode() for k, v in tick.as_fields().items()}}
    assert decode_entry(older) == ("run-0000000007", tick)  # written before the upgrade, still pending
