"""Cached values are JSON: a value planted in Redis cannot run code, and what the app caches reads back exactly."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from django.core.cache import cache as django_cache
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core import codec
from apps.core.cache import TwoLayerCache
from apps.core.redis import redis_client
from apps.leaderboard.selectors import LeaderboardPage
from apps.market.models import Symbol


class PlantedPayload:
    """What an attacker with write access to Redis would store: unpickling it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_a_pickle_planted_in_the_cache_is_a_miss_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    two_layer = TwoLayerCache()
    redis_client().set(two_layer._l2_key("analytics:summary"), pickle.dumps(PlantedPayload(marker)))
    assert two_layer.cached("analytics", "summary", lambda: {"fresh": True}) == {"fresh": True}
    assert not marker.exists()


def test_django_s_own_cache_stores_json_not_pickles(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    key = django_cache.make_key("planted")
    redis_client().set(key, pickle.dumps(PlantedPayload(marker)))
    with pytest.raises(ValueError):  # the JSON serializer refuses the bytes instead of running them
        django_cache.get("planted")
    assert not marker.exists()
    django_cache.set("owner", "42")
    assert redis_client().get(key.replace("planted", "owner")) == b'"42"'


def test_a_type_the_codec_does_not_know_fails_when_written_not_when_read() -> None:
    @dataclass
    class Unregistered:
        x: int

    with pytest.raises(TypeError, match="Unregistered"):
        codec.dumps({"value": Unregistered(1)})
    with pytest.raises(TypeError, match=r"zoneinfo|ZoneInfo"):
        from zoneinfo import ZoneInfo

        codec.dumps(datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Paris")))


@pytest.mark.parametrize(
    "raw",
    [b'{"$t":"dataclass","c":"os.system","v":{}}', b'{"$t":"model","m":"auth.Nope","v":{}}', b'{"$t":"exec"}', b"\x80"],
)
def test_bytes_the_codec_did_not_write_are_refused(raw: bytes) -> None:
    with pytest.raises(codec.CodecError):
        codec.loads(raw)


# --- exact round trips -----------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.decimals(allow_nan=False, places=None),
    st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-5))])),
    st.dates(),
    st.timedeltas(),
    st.binary(min_size=12, max_size=12).map(ObjectId),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
        st.dictionaries(st.integers(), children, max_size=3),
    ),
    max_leaves=20,
)


def same(left: Any, right: Any) -> bool:
    """Equal, of the same types all the way down (Decimal('1.10') is not Decimal('1.1'))."""
    return type(left) is type(right) and repr(left) == repr(right)


@hypothesis_settings(max_examples=200, deadline=None)
@given(values)
def test_every_cacheable_value_reads_back_exactly(value: Any) -> None:
    """Feature: trading-performance-optimization, Property 28: a value served from the cache is the value the loader
    returned: same types, same digits, same time zone."""
    assert same(codec.loads(codec.dumps(value)), value)


def test_what_the_app_caches_reads_back_exactly(db: None) -> None:
    symbol = Symbol.objects.create(ticker="ACME", name="Acme", sector="technology", initial_price=Decimal("10.50"))
    page = LeaderboardPage("value", 1, 10, 1, datetime(2026, 11, 30, tzinfo=UTC), [{"rank": 1, "username": "a"}])
    listing = ([symbol], 1)
    decoded_listing = codec.loads(codec.dumps(listing))
    assert same(codec.loads(codec.dumps(page)), page)
    assert isinstance(decoded_listing, tuple) and decoded_listing[1] == 1
    loaded = decoded_listing[0][0]
    assert isinstance(loaded, Symbol) and not loaded._state.adding
    for field in Symbol._meta.concrete_fields:
        assert same(getattr(loaded, field.attname), getattr(symbol, field.attname)), field.attname
    assert same(codec.loads(codec.dumps(date(2026, 1, 2))), date(2026, 1, 2))
