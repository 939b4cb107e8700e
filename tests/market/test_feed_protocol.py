"""Client message validation, the rate limit, and the size of every frame the server sends."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.market.feed.frames import MAX_FRAME_BYTES, error_frame, pack_frames, subscriptions_frames
from apps.market.feed.protocol import (
    ABUSE_STRIKES,
    FeedError,
    MessageRateLimiter,
    Ping,
    Subscribe,
    Unsubscribe,
    parse_client_message,
)

json_items = st.lists(
    st.dictionaries(st.text(max_size=20), st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=60)))
    .map(lambda item: json.dumps(item, separators=(",", ":")))
    .filter(lambda item: len(item) < 900),
    max_size=60,
)


@settings(max_examples=300)
@given(items=json_items, timestamp=st.integers(0, 2**53), batch_id=st.integers(0, 2**53))
def test_packed_frames_never_exceed_one_kilobyte_and_keep_every_item_in_order(
    items: list[str], timestamp: int, batch_id: int
) -> None:
    """Feature: trading-performance-optimization, Property 23: For any WebSocket message, the size should not exceed 1KB"""  # noqa: E501
    prefix = '{"type":"stock_updates","updates":['
    suffix = f'],"timestamp":{timestamp},"batchId":{batch_id}}}'
    frames = pack_frames(prefix, items, suffix)
    assert all(len(frame.encode()) <= MAX_FRAME_BYTES for frame in frames)
    decoded = [json.loads(frame) for frame in frames]
    assert [item for frame in decoded for item in frame["updates"]] == [json.loads(item) for item in items]


@settings(max_examples=200)
@given(code=st.sampled_from(["unknown_symbol", "invalid_message"]), message=st.text(max_size=5000))
def test_error_frames_fit_one_kilobyte_whatever_client_text_they_quote(code: str, message: str) -> None:
    """Feature: trading-performance-optimization, Property 23: For any WebSocket message, the size should not exceed 1KB"""  # noqa: E501
    frame = error_frame(code, message, timestamp=1)
    assert len(frame.encode()) <= MAX_FRAME_BYTES
    assert json.loads(frame)["code"] == code


@settings(max_examples=100)
@given(symbols=st.lists(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10), max_size=200, unique=True))
def test_an_acknowledgement_of_200_symbols_is_split_into_frames_of_at_most_one_kilobyte(symbols: list[str]) -> None:
    """Feature: trading-performance-optimization, Property 23: For any WebSocket message, the size should not exceed 1KB"""  # noqa: E501
    frames = subscriptions_frames("subscribed", symbols, timestamp=1)
    assert all(len(frame.encode()) <= MAX_FRAME_BYTES for frame in frames)
    assert [s for frame in frames for s in json.loads(frame)["symbols"]] == symbols


def test_subscribe_unsubscribe_and_ping_are_parsed_and_tickers_normalised() -> None:
    assert parse_client_message('{"type":"subscribe","symbols":[" acme ","XYZ"]}') == Subscribe(
        type="subscribe", symbols=["ACME", "XYZ"]
    )
    assert parse_client_message('{"type":"unsubscribe"}') == Unsubscribe(type="unsubscribe", symbols=None)
    assert parse_client_message('{"type":"ping"}') == Ping(type="ping")


@pytest.mark.parametrize(
    ("text", "code", "named"),
    [
        ("{not json", "malformed_json", "JSON"),
        (None, "malformed_json", "binary"),
        ("[1, 2]", "invalid_message", "object"),
        ('{"type":"dance"}', "unknown_type", "dance"),
        ('{"symbols":["A"]}', "unknown_type", "type"),
        ('{"type":"subscribe"}', "invalid_message", "symbols"),
        ('{"type":"subscribe","symbols":"ACME"}', "invalid_message", "symbols"),
        ('{"type":"subscribe","symbols":[""]}', "invalid_message", "symbols.0"),
        ('{"type":"subscribe","symbols":["WAYTOOLONGTICKER"]}', "invalid_message", "symbols.0"),
        ('{"type":"subscribe","symbols":["A"],"extra":1}', "invalid_message", "extra"),
        (json.dumps({"type": "subscribe", "symbols": [f"S{n}" for n in range(201)]}), "too_many_symbols", "200"),
        ("x" * 20_000, "message_too_large", "16384"),
    ],
)
def test_each_bad_message_is_refused_with_a_code_and_a_message_naming_the_problem(
    text: str | None, code: str, named: str
) -> None:
    with pytest.raises(FeedError) as refused:
        parse_client_message(text)
    assert refused.value.code == code
    assert named in refused.value.message


# Every code the parser may answer with (the feed's own refusals, such as rate_limited, come later).
FEED_ERROR_CODES = {"malformed_json", "message_too_large", "invalid_message", "unknown_type", "too_many_symbols"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
client_texts = st.one_of(
    st.text(max_size=300),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "unsubscribe", "ping", "other"])},
        optional={"symbols": json_values, "clientId": json_values},
    ).map(json.dumps),
)


@settings(max_examples=300)
@given(text=client_texts)
def test_any_text_is_either_a_valid_message_or_a_feed_error_with_a_code_and_a_message(text: str) -> None:
    try:
        message = parse_client_message(text)
    except FeedError as refused:
        assert refused.code in FEED_ERROR_CODES
        assert refused.message
        return
    assert isinstance(message, Subscribe | Unsubscribe | Ping)
    assert json.loads(text)["type"] == message.type


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_eleventh_message_within_a_second_is_refused_and_the_next_second_is_free_again() -> None:
    clock = FakeClock()
    limiter = MessageRateLimiter(clock)
    assert all(limiter.allow() for _ in range(10))
    assert not limiter.allow()
    clock.now += 1.0
    assert limiter.allow()
    assert not limiter.abusive


def test_sustained_refusals_are_abuse_but_an_occasional_burst_is_not() -> None:
    clock = FakeClock()
    limiter = MessageRateLimiter(clock)
    for _ in range(5):  # five bursts of 12, one per 3 seconds: 10 refusals over 12 s
        for _ in range(12):
            limiter.allow()
        clock.now += 3.0
    assert not limiter.abusive
    for _ in range(10 + ABUSE_STRIKES):
        limiter.allow()
    assert limiter.abusive
