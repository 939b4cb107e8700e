"""The migration that moves one-document-per-tick history (PriceTick) into tick buckets."""

import importlib
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from bson import Decimal128
from django.apps import apps
from django.db import connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.market.buckets import document_ticks
from apps.market.models import TickBucket

migration = importlib.import_module("apps.market.migrations.0003_tickbucket")
START_MS = 1_700_000_000_000


def old_documents(steps: list[tuple[int, str]]) -> list[dict[str, object]]:
    documents, at = [], START_MS
    for n, (gap, symbol) in enumerate(steps):
        at += gap
        documents.append(
            {
                "tick_id": f"old-{n:06d}",
                "symbol": symbol,
                "price": Decimal128(Decimal(10 + n) / 100),
                "previous_close": Decimal128("9.99"),
                "volume": n * 100,
                "recorded_at": datetime.fromtimestamp(at / 1000, tz=UTC),
            }
        )
    return documents


def move(capsys: pytest.CaptureFixture[str]) -> str:
    migration.move_ticks_to_buckets(apps, SimpleNamespace(connection=connections["default"]))
    return capsys.readouterr().out


@pytest.mark.django_db
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.tuples(st.integers(0, 40_000), st.sampled_from(["AAA", "BBB", "CCC"])), min_size=1, max_size=300),
    interrupted_after=st.integers(0, 3),
)
def test_the_migration_keeps_every_old_tick_exactly_once_even_when_run_again(
    capsys: pytest.CaptureFixture[str], steps: list[tuple[int, str]], interrupted_after: int
) -> None:
    """Feature: trading-performance-optimization, Property 36: For any throttled database write operation, no price updates should be lost"""  # noqa: E501
    old = connections["default"].get_collection(migration.OLD_COLLECTION)
    old.delete_many({})
    TickBucket.collection().delete_many({})
    documents = old_documents(steps)
    old.insert_many(documents)
    symbols = sorted({d["symbol"] for d in documents})
    out = move(capsys)
    assert f"moved {len(documents)}/{len(documents)} ticks" in out  # progress, symbol by symbol
    # An interrupted move run again (some symbols' buckets lost in between) stores nothing twice.
    TickBucket.collection().delete_many({"symbol": {"$in": symbols[interrupted_after:]}})
    move(capsys)
    stored = [n for d in TickBucket.collection().find() for n in document_ticks(d)]
    assert Counter(tick_id for tick_id, _ in stored) == Counter(d["tick_id"] for d in documents)
    by_id = {tick_id: tick for tick_id, tick in stored}
    for document in documents:
        tick = by_id[document["tick_id"]]
        assert tick.symbol == document["symbol"] and tick.volume == document["volume"]
        assert Decimal(repr(tick.price)) == document["price"].to_decimal()  # type: ignore[attr-defined]
        assert tick.timestamp == round(document["recorded_at"].timestamp() * 1000)  # type: ignore[attr-defined]
    old.drop()


@pytest.mark.django_db
def test_the_migration_refuses_to_move_ticks_before_the_market_database_has_its_collection(
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = connections["default"].get_collection(migration.OLD_COLLECTION)
    old.insert_many(old_documents([(0, "AAA")]))
    TickBucket.collection().drop()
    try:
        with pytest.raises(RuntimeError, match="migrate --database market"):
            move(capsys)
    finally:
        old.drop()
        with connections["market"].schema_editor() as editor:
            editor.create_model(TickBucket)  # as the market migration made it, for the tests after this one
