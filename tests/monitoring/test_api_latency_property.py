"""Property 15 is a speed target; `bench/api_load.py --check` measures it. Here: the system notices when it is
missed, from the requests themselves: real API requests through the whole Django stack (URL routing, every
middleware of settings.MIDDLEWARE, authentication, the view), the real middleware recording each one's latency,
the recorder's own reading and arithmetic turning the histogram into the p95 figure, and the real alert rules
(thresholds from settings) opening it. Only the clock is fake: the middleware's stopwatch reads each request's
latency from the generated list, so no request has to be slow in real time."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core.redis import redis_client
from apps.monitoring import middleware as middleware_module
from apps.monitoring.models import Alert, AlertRule
from apps.monitoring.recorder import derived_figures, prometheus_reading
from apps.monitoring.services import alerts_evaluate

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
# Request latencies in whole milliseconds, 200 ms itself left out: a fake clock's float sums may land either side.
fast = st.integers(1, 199)
slow = st.integers(201, 3000)
ENDPOINTS = ("/api/v1/me", "/api/v1/symbols", "/api/v1/analytics/summary", "/api/v1/leaderboard")


def api_reading(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The recorder's cumulative counters (`prometheus_reading`) of this process alone: with the multi-process
    directory it would add the other processes of the run (live servers, workers), whose requests are not ours."""
    with monkeypatch.context() as only_this_process:
        only_this_process.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
        return prometheus_reading()[0]


class Stopwatch:
    """The middleware's `perf_counter`: a request's second reading is its first plus the next latency."""

    def __init__(self, latencies_ms: list[int]) -> None:
        self.now = 1000.0
        self.started = False
        self.latencies = iter(latencies_ms)

    def perf_counter(self) -> float:
        if self.started:
            self.now += next(self.latencies) / 1000
        self.started = not self.started
        return self.now


@pytest.mark.django_db
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fast_requests=st.lists(fast, max_size=60),
    slow_requests=st.lists(slow, max_size=8),
    seed=st.randoms(),
    endpoint=st.sampled_from(ENDPOINTS),
)
def test_the_api_p95_alert_fires_exactly_when_fewer_than_95_percent_finish_within_200ms(
    monkeypatch: pytest.MonkeyPatch,
    auth_header: dict[str, str],
    fast_requests: list[int],
    slow_requests: list[int],
    seed: Any,
    endpoint: str,
) -> None:
    """Feature: trading-performance-optimization, Property 15: For any set of API requests, 95% should complete
    within 200ms — held to it by the monitoring: the API p95 alert opens exactly when fewer than 95 % of the
    requests of an interval finished within 200 ms (the threshold read from settings)."""
    threshold_ms = settings.ALERT_THRESHOLDS["api_p95_ms"]
    assert threshold_ms == 200  # the document's target is the setting's default
    latencies = [*fast_requests, *slow_requests]
    seed.shuffle(latencies)
    stopwatch = Stopwatch(latencies)
    redis_client().flushdb()  # each example's requests start a fresh rate-limit minute
    Alert.objects.all().delete()
    client = Client(**auth_header)
    before = api_reading(monkeypatch)  # the interval starts
    with monkeypatch.context() as timed:
        timed.setattr(middleware_module, "time", types.SimpleNamespace(perf_counter=stopwatch.perf_counter))
        statuses = {client.get(endpoint).status_code for _ in latencies}
    after = api_reading(monkeypatch)
    assert statuses <= {200}, statuses  # real answers, not refusals
    assert next(stopwatch.latencies, None) is None and not stopwatch.started  # every request was timed, once
    figures = derived_figures(before, after, settings.MONITORING_SAMPLE_SECONDS)  # the recorder's p95 of the interval
    changes = alerts_evaluate(figures=figures, now=T0)

    within = sum(1 for milliseconds in latencies if milliseconds <= 200)
    target_missed = bool(latencies) and within < 0.95 * len(latencies)
    assert ("api_p95_ms" in changes["opened"]) == target_missed
    assert AlertRule.objects.get(key="api_p95_ms").threshold == threshold_ms
