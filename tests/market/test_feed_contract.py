"""The feed's one contract: every string-packed server frame is an instance of its pydantic model."""

import json
import random
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from apps.market.feed.frames import MAX_FRAME_BYTES, error_frame, subscriptions_frames, update_frames
from apps.market.feed.protocol import ErrorFrame, ServerFrame, StockUpdates, Subscriptions
from apps.market.management.commands.feed_schema import feed_schema_text
from apps.market.ticks import Tick

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "feed-schema.json"
FRAME = TypeAdapter(ServerFrame)


def _ticks(count: int, rng: random.Random) -> list[Tick]:
    return [
        Tick(
            symbol=f"S{n}"[:10],
            price=round(rng.uniform(0.01, 99_999), 2),
            previous_close=round(rng.uniform(0.01, 99_999), 2),
            volume=rng.randrange(0, 10**9),
            timestamp=rng.randrange(0, 2**42),
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("count", [0, 1, 7, 40, 200])
def test_packed_update_frames_are_stock_updates_carrying_every_tick(count: int) -> None:
    ticks = _ticks(count, random.Random(count))
    encoded = [json.dumps(t.as_update(), separators=(",", ":")) for t in ticks]
    frames = update_frames(encoded, timestamp=1_700_000_000_000, batch_id=42)
    parsed = [FRAME.validate_json(frame) for frame in frames]
    assert all(isinstance(p, StockUpdates) and p.batchId == 42 for p in parsed)
    assert [u.model_dump() for p in parsed for u in p.updates] == [t.as_update() for t in ticks]
    assert all(len(frame) <= MAX_FRAME_BYTES for frame in frames)


@pytest.mark.parametrize("kind", ["subscribed", "unsubscribed", "pong"])
def test_packed_acknowledgements_are_subscriptions_frames(kind: str) -> None:
    symbols = [f"T{n}" for n in range(150)]
    parsed = [FRAME.validate_json(frame) for frame in subscriptions_frames(kind, symbols, timestamp=5)]
    assert all(isinstance(p, Subscriptions) and p.type == kind for p in parsed)
    assert [s for p in parsed for s in p.symbols] == symbols


def test_error_frames_are_error_frames_even_when_shortened() -> None:
    for message in ["symbols: at most 200 per connection", "\u2603" * 2000]:
        parsed = FRAME.validate_json(error_frame("invalid_message", message, timestamp=9))
        assert isinstance(parsed, ErrorFrame) and parsed.code == "invalid_message"


def test_docs_feed_schema_is_the_models_schema() -> None:
    assert SCHEMA_FILE.read_text() == feed_schema_text(), (
        "regenerate: python manage.py feed_schema > docs/feed-schema.json"
    )
