"""The performance recorder: figures from every source, deltas between samples, rollups, retention."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.core.metrics import API_LATENCY, CACHE_REQUESTS, DB_QUERY, TICKS_GENERATED
from apps.core.models import DeadLetter
from apps.monitoring import recorder
from apps.monitoring.figures import FIGURE_NAMES, bucket_delta, quantile
from apps.monitoring.models import MetricSample
from apps.monitoring.recorder import derived_figures, rollup_record, sample_record, samples_prune

T0 = datetime(2026, 11, 25, 12, 0, 3, tzinfo=UTC)
BOUNDS = ["0.01", "0.1", "0.2", "0.5", "+Inf"]


def test_quantiles_interpolate_inside_the_bucket() -> None:
    buckets = {"0.1": 50.0, "0.2": 100.0, "+Inf": 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.95, buckets) == pytest.approx(0.19)
    assert quantile(0.99, {"0.1": 0.0, "+Inf": 10.0}) == pytest.approx(0.1)  # past the last bound: that bound
    assert quantile(0.95, {"0.1": 0.0, "+Inf": 0.0}) is None


@settings(max_examples=100)
@given(counts=st.lists(st.integers(min_value=0, max_value=1000), min_size=len(BOUNDS), max_size=len(BOUNDS)))
def test_a_quantile_lies_in_the_bucket_that_holds_its_rank(counts: list[int]) -> None:
    cumulative = dict(zip(BOUNDS, [float(sum(counts[: i + 1])) for i in range(len(counts))], strict=True))
    total = cumulative["+Inf"]
    p95 = quantile(0.95, cumulative)
    if total == 0:
        assert p95 is None
        return
    assert p95 is not None and 0 <= p95 <= 0.5
    below = [float(b) for b in BOUNDS[:-1] if cumulative[b] < 0.95 * total]
    assert p95 >= (max(below) if below else 0.0)
    assert quantile(0.5, cumulative) <= p95 <= quantile(0.99, cumulative)  # type: ignore[operator]


def test_a_counter_restart_is_not_a_negative_rate() -> None:
    assert bucket_delta({"0.1": 10.0, "+Inf": 20.0}, {"0.1": 1.0, "+Inf": 2.0}) == {"0.1": 1.0, "+Inf": 2.0}
    figures = derived_figures({"ticks": 1000.0}, {"ticks": 50.0, **_empty_counters()}, 5.0)
    assert figures["tick_rate"] == 10.0


def _empty_counters() -> dict:
    return {"api_buckets": {}, "db_buckets": {}, "ws_frames": 0.0, "ws_bytes": 0.0, "ws_errors": 0.0}


def test_a_sample_holds_every_key_figure_and_rates_come_from_the_previous_one(db: None) -> None:
    first = sample_record(now=T0)
    assert set(first.figures) == set(FIGURE_NAMES)
    assert first.figures["memory_percent"] is not None
    assert first.figures["api_p95_ms"] is None  # no previous sample: no interval yet
    for _ in range(19):
        API_LATENCY.labels(endpoint="api/v1/x", method="GET", status="200", cache="none").observe(0.004)
    API_LATENCY.labels(endpoint="api/v1/x", method="GET", status="200", cache="none").observe(0.4)
    DB_QUERY.labels(collection="c", operation="find", index_used="yes").observe(0.003)
    TICKS_GENERATED.inc(50)
    CACHE_REQUESTS.labels(namespace="prices", result="l2_hit").inc(3)
    CACHE_REQUESTS.labels(namespace="prices", result="miss").inc(1)
    DeadLetter.objects.create(task_name="t", task_id="1", error="boom")
    second = sample_record(now=T0 + timedelta(seconds=5))
    figures = second.figures
    assert 2.5 <= figures["api_p50_ms"] <= 5
    assert 200 <= figures["api_p99_ms"] <= 500
    assert figures["api_requests_per_second"] == pytest.approx(4.0)
    assert figures["tick_rate"] == pytest.approx(10.0)
    assert figures["cache_hit_ratio"] == pytest.approx(0.75)
    assert figures["db_p95_ms"] is not None
    assert figures["dead_letters"] == 1
    assert figures["open_alerts"] == 0
    assert figures["cpu_percent"] is not None
    assert figures["redis_connections"] and figures["redis_connections"] >= 1
    assert figures["celery_queue_length"] == 0
    assert second.degraded == []


def test_a_failing_source_is_named_and_basic_figures_remain(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise ConnectionError("redis is gone")

    monkeypatch.setattr(recorder, "redis_reading", broken)
    monkeypatch.setattr(recorder, "celery_reading", broken)
    sample = sample_record(now=T0)
    assert sample.degraded == ["redis", "celery"]
    assert sample.figures["memory_percent"] is not None
    assert sample.figures["redis_memory_ratio"] is None


def test_the_latest_sample_is_published_for_the_ops_page(db: None) -> None:
    from apps.monitoring.selectors import latest_figures_read

    sample_record(now=T0)
    latest = latest_figures_read()
    assert latest.source == "redis" and latest.recorded_at == T0


def test_a_finished_five_minute_window_is_averaged_into_one_rollup(db: None) -> None:
    window = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    for seconds, memory in ((0, 10.0), (100, 20.0), (299, 60.0), (300, 99.0)):
        MetricSample.objects.create(recorded_at=window + timedelta(seconds=seconds), figures={"memory_percent": memory})
    rollup = rollup_record(now=window + timedelta(seconds=301))
    assert rollup is not None
    assert rollup.recorded_at == window and rollup.figures["memory_percent"] == pytest.approx(30.0)
    assert rollup_record(now=window + timedelta(seconds=306)) is None  # once per window


def test_samples_past_retention_are_pruned_in_batches(db: None) -> None:
    now = T0
    old = [MetricSample(recorded_at=now - timedelta(hours=49, seconds=i)) for i in range(25)]
    recent = [MetricSample(recorded_at=now - timedelta(hours=1, seconds=i)) for i in range(5)]
    old_rollup = MetricSample(recorded_at=now - timedelta(days=31), resolution=MetricSample.Resolution.ROLLUP)
    MetricSample.objects.bulk_create([*old, *recent, old_rollup])
    assert samples_prune(now=now, batch=10, max_batches=2) == 20 + 1  # capped per call
    assert samples_prune(now=now, batch=10) == 5
    assert MetricSample.objects.count() == 5


def test_with_mongodb_down_the_sample_still_reaches_the_ops_page(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.monitoring.selectors import latest_figures_read

    def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("mongodb is gone")

    monkeypatch.setattr(recorder, "_previous_raw_sample", down)
    monkeypatch.setattr(recorder, "database_reading", down)
    monkeypatch.setattr(MetricSample, "save", down)
    sample = sample_record(now=T0)
    assert sample.degraded == ["mongodb"]
    latest = latest_figures_read()
    assert latest.degraded == ["mongodb"] and latest.figures["memory_percent"] is not None
