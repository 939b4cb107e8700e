"""Daily price-history cleanup and cache warm-up: bounded batches with pauses, commands with progress."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.dashboard.tasks import warm_cache
from apps.market import buckets
from apps.market.models import TickBucket
from apps.market.retention import ticks_cutoff, ticks_delete_older_than
from apps.market.tasks import cleanup_prices
from apps.market.ticks import Tick

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def store_aged(ages: list[timedelta], *, now: datetime = NOW) -> None:
    buckets.store_ticks(
        [(uuid.uuid4().hex, Tick("ACME", 10.0, 10.0, 0, int((now - age).timestamp() * 1000))) for age in ages]
    )


def store_ticks(ages_in_hours: list[int], *, now: datetime = NOW) -> None:
    store_aged([timedelta(hours=age) for age in ages_in_hours], now=now)


def stored_times() -> list[datetime]:
    return [
        datetime.fromtimestamp(at / 1000, tz=UTC)
        for times in TickBucket.objects.values_list("times", flat=True)
        for at in times
    ]


@pytest.mark.django_db
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offsets_s=st.lists(st.integers(-24 * 3600, 24 * 3600) | st.integers(-90, 90), max_size=60),
    days=st.integers(1, 10),
    batch_size=st.integers(1, 15),
)
def test_a_cleanup_removes_exactly_the_old_ticks_in_bounded_paused_batches(
    settings: Any, offsets_s: list[int], days: int, batch_size: int
) -> None:
    """Feature: trading-performance-optimization, Property 29: For any daily cleanup cycle, old price history records
    should be removed from storage"""
    TickBucket.objects.all().delete()
    cutoff = ticks_cutoff(days=days, now=NOW)
    # Ticks around the cutoff (within a bucket window: partial buckets) and far from it, whole buckets.
    store_aged([NOW - cutoff + timedelta(seconds=offset) for offset in offsets_s])
    pauses: list[float] = []
    batches = list(
        ticks_delete_older_than(cutoff=cutoff, batch_size=batch_size, pause_seconds=0.5, sleep=pauses.append)
    )
    old = sum(1 for offset in offsets_s if offset > 0)
    assert sum(batches) == old
    assert all(0 < batch < batch_size + settings.TICK_BUCKET_MAX_POINTS for batch in batches)  # bounded batches
    assert len(pauses) <= len(batches)
    remaining = stored_times()
    assert len(remaining) == len(offsets_s) - old
    assert all(recorded_at >= cutoff for recorded_at in remaining)


def test_a_cutoff_of_less_than_a_day_is_refused() -> None:
    with pytest.raises(ValueError, match="days"):
        ticks_cutoff(days=0)


@pytest.mark.django_db
def test_the_daily_task_keeps_the_configured_retention(settings: Any) -> None:
    settings.PRICE_HISTORY_RETENTION_DAYS = 7
    now = datetime.now(UTC)
    store_ticks([24 * 8, 24 * 8, 24 * 6, 1], now=now)
    assert cleanup_prices.apply().get() == 2
    assert len(stored_times()) == 2


@pytest.mark.django_db
def test_the_cleanup_command_shows_progress(capsys: pytest.CaptureFixture[str]) -> None:
    store_aged(
        [timedelta(days=3, minutes=minutes) for minutes in range(5)] + [timedelta(hours=1)], now=datetime.now(UTC)
    )
    call_command("cleanup_prices", "--days", "2", "--batch-size", "2")
    output = capsys.readouterr().out
    assert "5 tick(s) recorded before" in output
    assert "deleted 2/5" in output and "deleted 4/5" in output and "deleted 5/5" in output
    assert len(stored_times()) == 1


@pytest.mark.django_db
def test_a_dry_run_only_counts(capsys: pytest.CaptureFixture[str]) -> None:
    store_ticks([24 * 30] * 3, now=datetime.now(UTC))
    call_command("cleanup_prices", "--dry-run")
    assert "3 tick(s) recorded before" in capsys.readouterr().out
    assert len(stored_times()) == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--days", "0"], "--days: must be between 1"),
        (["--days", "-3"], "--days: must be between 1"),
        (["--batch-size", "0"], "--batch-size: must be between 1"),
    ],
)
def test_bad_cleanup_arguments_are_refused_with_one_clear_line(arguments: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("cleanup_prices", *arguments)


@pytest.mark.django_db
def test_a_non_numeric_days_argument_is_refused() -> None:
    with pytest.raises(CommandError, match="invalid int value"):
        call_command("cleanup_prices", "--days", "seven")


@pytest.mark.django_db
def test_warm_cache_loads_the_hot_keys(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("warm_cache")
    output = capsys.readouterr().out
    assert "[1/3] leaderboards:value:1" in output
    assert "Warmed 3 keys." in output
    assert warm_cache.apply().get() == 3
