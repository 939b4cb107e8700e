import json
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.core.redis import redis_client
from apps.market.models import Symbol
from apps.market.quotes import latest_quotes
from apps.market.services import symbols_seed
from apps.market.stream import decode_entry, stream_key


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def market(db: None) -> list[str]:
    for _ in symbols_seed(count=12, seed=2):
        pass
    return sorted(Symbol.objects.values_list("ticker", flat=True))


def stream_ticks() -> list[tuple[str, str, int]]:
    entries: Any = redis_client().xrange(stream_key())
    ticks = [decode_entry(fields)[1] for _, fields in entries]
    return [(tick.symbol, repr(tick.price), tick.volume) for tick in ticks]


def test_run_market_sends_ticks_for_the_first_symbols_and_records_them(market: list[str], tmp_path: Path) -> None:
    recording = tmp_path / "session.jsonl"
    out = run(
        "run_market", "--seed", "4", "--rate", "400", "--symbols", "5", "--duration", "0.5", "--record", str(recording)
    )
    assert "Market stopped" in out
    sent = stream_ticks()
    assert 150 <= len(sent) <= 260
    assert {symbol for symbol, _, _ in sent} == set(market[:5])
    assert set(latest_quotes(market[:5])) == set(market[:5])
    lines = recording.read_text().splitlines()
    assert json.loads(lines[0]) == {"recording": "trading-ticks", "version": 1} and len(lines) == len(sent) + 1

    redis_client().delete(stream_key())
    run("replay_market", str(recording), "--speed", "10")
    assert stream_ticks() == sent  # the same session, tick for tick


def test_the_same_seed_sends_the_same_ticks_from_a_clean_start(market: list[str]) -> None:
    run("run_market", "--seed", "8", "--rate", "300", "--symbols", "3", "--duration", "0.3")
    first = stream_ticks()
    redis_client().flushdb()  # a clean start: no quotes, no stream, nothing stored
    run("run_market", "--seed", "8", "--rate", "300", "--symbols", "3", "--duration", "0.3")
    second = stream_ticks()
    common = min(len(first), len(second))
    assert common > 50 and first[:common] == second[:common]


def test_a_restarted_market_resumes_each_symbol_at_its_last_quote(market: list[str]) -> None:
    run("run_market", "--seed", "8", "--rate", "300", "--symbols", "3", "--duration", "0.3")
    last = {symbol: (price, volume) for symbol, price, volume in stream_ticks()}
    redis_client().delete(stream_key())
    run("run_market", "--seed", "8", "--rate", "300", "--symbols", "3", "--duration", "0.3")
    first: dict[str, tuple[str, int]] = {}
    for symbol, price, volume in stream_ticks():
        first.setdefault(symbol, (price, volume))
    for symbol, (price, volume) in first.items():
        assert volume > last[symbol][1]  # the session goes on: volume keeps growing
        assert abs(float(price) / float(last[symbol][0]) - 1) < 0.02  # one step from the last price, no jump


def test_without_quotes_the_market_resumes_from_the_stored_ticks(market: list[str]) -> None:
    from apps.market.buckets import store_ticks
    from apps.market.selectors import last_known_ticks
    from apps.market.ticks import Tick

    now_ms = int(time.time() * 1000)
    store_ticks([("old-1", Tick(market[0], 123.45, 120.0, 9_900, now_ms - 5_000))])
    resumed = last_known_ticks(market[:2])
    assert resumed == {market[0]: Tick(market[0], 123.45, 120.0, 9_900, now_ms - 5_000)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "--rate: must be greater than 0"),
        (["--rate", "fast"], "--rate: 'fast' is not a number"),
        (["--rate", "nan"], "--rate: must be"),
        (["--symbols", "0"], "--symbols: must be between 1 and 5000"),
        (["--symbols", "1.5"], "--symbols: '1.5' is not a whole number"),
        (["--seed", "-1"], "--seed: must be between 0"),
        (["--duration", "-2"], "--duration: must be greater than 0"),
        (["--record", "/nonexistent-dir/x.jsonl", "--duration", "0.1"], "--record: cannot write"),
    ],
)
def test_run_market_rejects_bad_arguments(market: list[str], args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("run_market", *args)


def test_run_market_needs_listed_symbols(db: None) -> None:
    with pytest.raises(CommandError, match=r"run `manage\.py seed_demo` first"):
        run("run_market", "--duration", "0.1")


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "FILE: cannot read"),
        ("garbage\n", [], "line 1: not a tick recording"),
        ('{"recording": "trading-ticks", "version": 1}\n{"offset": "soon"}\n', [], "line 2"),
        ('{"recording": "trading-ticks", "version": 1}\n', ["--speed", "0"], "--speed: must be greater than 0"),
        (b"\xff\xfe", [], "FILE:"),
    ],
)
def test_replay_market_rejects_bad_files_and_arguments(
    tmp_path: Path, content: str | bytes | None, args: list[str], message: str
) -> None:
    path = tmp_path / "recording.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=message):
        run("replay_market", str(path), *args)
    assert redis_client().xlen(stream_key()) == 0  # nothing half-sent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--writes-per-second", "11"], "--writes-per-second: must be between 1 and 10"),
        (["--duration", "0"], "--duration: must be greater than 0"),
        (["--consumer", ""], "--consumer: must be 1 to 100 printable characters"),
        (["--consumer", "x\ny"], "--consumer: must be 1 to 100 printable characters"),
    ],
)
def test_persist_ticks_rejects_bad_arguments(db: None, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("persist_ticks", *args)


def test_persist_ticks_stores_what_run_market_sent(market: list[str]) -> None:
    from apps.market.models import TickBucket

    run("run_market", "--seed", "1", "--rate", "500", "--symbols", "4", "--duration", "0.4")
    sent = len(stream_ticks())
    out = run("persist_ticks", "--duration", "1.5")
    assert f"{sent} ticks stored" in out
    stored = sum(TickBucket.objects.values_list("count", flat=True))
    assert stored == sent and redis_client().xlen(stream_key()) == 0
