"""Daily price-history cleanup and cache warm-up: bounded batches with pauses, commands with progress."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core.tasks import cleanup_prices, warm_cache
from apps.market.models import PriceTick
from apps.market.retention import ticks_cutoff, ticks_delete_older_than

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def store_ticks(ages_in_hours: list[int], *, now: datetime = NOW) -> None:
    PriceTick.objects.bulk_create(
        PriceTick(
            tick_id=uuid.uuid4().hex,
            symbol="ACME",
            price=Decimal("10.00"),
            previous_close=Decimal("10.00"),
            volume=0,
            recorded_at=now - timedelta(hours=age),
        )
        for age in ages_in_hours
    )


@pytest.mark.django_db
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ages=st.lists(st.integers(0, 24 * 14), max_size=40),
    days=st.integers(1, 10),
    batch_size=st.integers(1, 15),
)
def test_a_cleanup_removes_exactly_the_old_ticks_in_bounded_paused_batches(
    ages: list[int], days: int, batch_size: int
) -> None:
    """Feature: trading-performance-optimization, Property 29: For any daily cleanup cycle, old price history records
    should be removed from storage"""
    PriceTick.objects.all().delete()
    store_ticks(ages)
    cutoff = ticks_cutoff(days=days, now=NOW)
    pauses: list[float] = []
    batches = list(
        ticks_delete_older_than(cutoff=cutoff, batch_size=batch_size, pause_seconds=0.5, sleep=pauses.append)
    )
    old = sum(1 for age in ages if NOW - timedelta(hours=age) < cutoff)
    assert sum(batches) == old
    assert all(0 < batch <= batch_size for batch in batches)
    assert len(pauses) == max(0, len(batches) - 1) + (1 if old and old % batch_size == 0 else 0)
    remaining = list(PriceTick.objects.values_list("recorded_at", flat=True))
    assert len(remaining) == len(ages) - old
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
    assert PriceTick.objects.count() == 2


@pytest.mark.django_db
def test_the_cleanup_command_shows_progress(capsys: pytest.CaptureFixture[str]) -> None:
    store_ticks([24 * 3] * 5 + [1], now=datetime.now(UTC))
    call_command("cleanup_prices", "--days", "2", "--batch-size", "2")
    output = capsys.readouterr().out
    assert "5 tick(s) recorded before" in output
    assert "deleted 2/5" in output and "deleted 4/5" in output and "deleted 5/5" in output
    assert PriceTick.objects.count() == 1


@pytest.mark.django_db
def test_a_dry_run_only_counts(capsys: pytest.CaptureFixture[str]) -> None:
    store_ticks([24 * 30] * 3, now=datetime.now(UTC))
    call_command("cleanup_prices", "--dry-run")
    assert "3 tick(s) recorded before" in capsys.readouterr().out
    assert PriceTick.objects.count() == 3


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
