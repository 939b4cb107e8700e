"""Property 15 is a speed target; `bench/api_load.py --check` measures it. Here: the system notices when it is
missed, from the requests themselves: the real middleware records each API request's latency, the recorder's
arithmetic turns the histogram into the p95 figure, and the real alert rules (thresholds from settings) open it."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from typing import Any

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core.metrics import API_LATENCY
from apps.monitoring import middleware as middleware_module
from apps.monitoring.middleware import RequestMetricsMiddleware
from apps.monitoring.models import Alert, AlertRule
from apps.monitoring.recorder import derived_figures
from apps.monitoring.services import alerts_evaluate

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
# Request latencies in whole milliseconds, 200 ms itself left out: a fake clock's float sums may land either side.
fast = st.integers(1, 199)
slow = st.integers(201, 3000)


def api_latency_reading() -> dict[str, Any]:
    """The recorder's cumulative API histogram (`prometheus_reading()[0]`), from this process' metric only: the
    recorder also reads every other process' files of the run, which in a full suite costs 0.1 s a reading."""
    buckets: dict[str, float] = {}
    for family in API_LATENCY.collect():
        for sample in family.samples:
            if sample.name == "trading_api_request_seconds_bucket":
                buckets[sample.labels["le"]] = buckets.get(sample.labels["le"], 0.0) + sample.value
    zeros = dict.fromkeys(("ws_frames", "ws_bytes", "ws_errors", "ticks", "cache_hits", "cache_lookups"), 0.0)
    return {"api_buckets": buckets, "db_buckets": {}, **zeros}


class FakePerfCounter:
    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


@pytest.mark.django_db
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fast_requests=st.lists(fast, max_size=60), slow_requests=st.lists(slow, max_size=8), seed=st.randoms())
def test_the_api_p95_alert_fires_exactly_when_fewer_than_95_percent_finish_within_200ms(
    monkeypatch: pytest.MonkeyPatch, fast_requests: list[int], slow_requests: list[int], seed: Any
) -> None:
    """Feature: trading-performance-optimization, Property 15: For any set of API requests, 95% should complete
    within 200ms — held to it by the monitoring: the API p95 alert opens exactly when fewer than 95 % of the
    requests of an interval finished within 200 ms (the threshold read from settings)."""
    threshold_ms = settings.ALERT_THRESHOLDS["api_p95_ms"]
    assert threshold_ms == 200  # the document's target is the setting's default
    latencies = [*fast_requests, *slow_requests]
    seed.shuffle(latencies)
    clock = FakePerfCounter()
    monkeypatch.setattr(middleware_module, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))

    def view_taking(milliseconds: int) -> Any:
        def view(request: HttpRequest) -> HttpResponse:
            clock.now += milliseconds / 1000  # the request's work, on the fake clock
            return HttpResponse("{}", content_type="application/json")

        return view

    Alert.objects.all().delete()
    before = api_latency_reading()  # the interval starts
    factory = RequestFactory()
    for milliseconds in latencies:
        RequestMetricsMiddleware(view_taking(milliseconds))(factory.get("/api/v1/me"))
    after = api_latency_reading()
    figures = derived_figures(before, after, settings.MONITORING_SAMPLE_SECONDS)  # the recorder's p95 of the interval
    changes = alerts_evaluate(figures=figures, now=T0)

    within = sum(1 for milliseconds in latencies if milliseconds <= 200)
    target_missed = bool(latencies) and within < 0.95 * len(latencies)
    assert ("api_p95_ms" in changes["opened"]) == target_missed
    assert AlertRule.objects.get(key="api_p95_ms").threshold == threshold_ms
