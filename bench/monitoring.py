"""What monitoring costs: per-request and per-query instrumentation overhead, recorder and scrape times.

Each instrumented figure is measured next to its uninstrumented baseline in the
same run: a trivial API view called bare and through RequestMetricsMiddleware;
the same indexed `find_one` on a MongoClient without listeners and on one with
QueryMetricsListener. The recorder sample (every 5 s in production) is compared
with its interval; /metrics and /ops/data are timed through Django's test client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import psutil

from bench.common import cpu_seconds, percentile, progress, setup_django, table


def _timed(action: Callable[[], object], count: int) -> list[float]:
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return durations


def _row(
    what: str, unit: float, label: str, baseline: list[float] | None, measured: list[float], overhead: str = ""
) -> list[object]:
    def fmt(values: list[float] | None, fraction: float) -> str:
        return "—" if not values else f"{percentile(values, fraction) * unit:.1f}"

    if not overhead:
        difference = (percentile(measured, 0.5) - percentile(baseline, 0.5)) * unit if baseline else None
        overhead = "—" if difference is None else f"{difference:+.1f} {label}"
    return [what, fmt(baseline, 0.5), fmt(baseline, 0.95), fmt(measured, 0.5), fmt(measured, 0.95), overhead]


def _middleware_rows(count: int) -> list[list[object]]:
    from django.http import HttpResponse
    from django.test import RequestFactory

    from apps.monitoring.middleware import RequestMetricsMiddleware

    def view(request: object) -> HttpResponse:
        return HttpResponse(b"{}", content_type="application/json")

    request = RequestFactory().get("/api/v1/bench")
    request.resolver_match = SimpleNamespace(route="api/v1/bench")  # type: ignore[assignment]
    wrapped = RequestMetricsMiddleware(view)
    bare = _timed(lambda: view(request), count)
    measured = _timed(lambda: wrapped(request), count)
    return [_row("API request: view alone vs through the metrics middleware (µs)", 1e6, "µs", bare, measured)]


def _listener_rows(count: int) -> list[list[object]]:
    from django.conf import settings
    from pymongo import MongoClient, monitoring

    from apps.monitoring.instrumentation import QueryMetricsListener

    saved = monitoring._LISTENERS
    monitoring._LISTENERS = monitoring._Listeners([], [], [], [], [])  # clients below get only what we pass
    try:
        plain = MongoClient(settings.MONGODB_URI)
        listened = MongoClient(settings.MONGODB_URI, event_listeners=[QueryMetricsListener()])
    finally:
        monitoring._LISTENERS = saved
    collection = "bench_monitoring"
    plain[settings.MONGODB_NAME][collection].insert_many([{"ticker": f"T{i}", "i": i} for i in range(1000)])
    plain[settings.MONGODB_NAME][collection].create_index("ticker")
    rows = []
    try:
        plain_collection = plain[settings.MONGODB_NAME][collection]
        listened_collection = listened[settings.MONGODB_NAME][collection]
        _timed(
            lambda: (plain_collection.find_one({"ticker": "T5"}), listened_collection.find_one({"ticker": "T5"})), 50
        )
        baseline: list[float] = []
        measured: list[float] = []
        for _ in range(count):  # interleaved, so load from other processes hits both alike
            baseline += _timed(lambda: plain_collection.find_one({"ticker": "T500"}), 1)
            measured += _timed(lambda: listened_collection.find_one({"ticker": "T500"}), 1)
        rows.append(
            _row("MongoDB find_one by indexed field: no listener vs listener (µs)", 1e6, "µs", baseline, measured)
        )
        listener = QueryMetricsListener()
        event = SimpleNamespace(
            command_name="find",
            command={"find": "market_symbol", "filter": {"ticker": "T500"}},
            connection_id=("127.0.0.1", 1),
            request_id=1,
            duration_micros=300,
        )
        callbacks = _timed(lambda: (listener.started(event), listener.succeeded(event)), count * 10)  # type: ignore[arg-type]
        rows.append(_row("Listener callbacks alone, per command (µs)", 1e6, "µs", None, callbacks))
    finally:
        plain[settings.MONGODB_NAME].drop_collection(collection)
        plain.close()
        listened.close()
    return rows


def _recorder_rows(count: int) -> list[list[object]]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from apps.monitoring.models import MetricSample
    from apps.monitoring.recorder import sample_record

    start = timezone.now()
    moments = iter(start + timedelta(seconds=5 * i) for i in range(count + 1))
    samples = _timed(lambda: sample_record(now=next(moments)), count)
    interval = [float(settings.MONITORING_SAMPLE_SECONDS)] * count
    get_user_model().objects.filter(username="bench-ops").delete()
    get_user_model().objects.create_user("bench-ops", "ops@example.com", "bench-pass", is_staff=True)
    client = Client()
    client.login(username="bench-ops", password="bench-pass")
    scrape = _timed(lambda: client.get("/metrics"), count)
    data = _timed(lambda: client.get("/ops/data"), count)
    page = _timed(lambda: client.get("/ops/"), max(5, count // 4))
    MetricSample.objects.filter(recorded_at__gte=start).delete()
    return [
        _row(
            "Recorder sample (ms) vs its interval",
            1e3,
            "ms",
            interval,
            samples,
            f"{percentile(samples, 0.5) / interval[0]:.1%} of the interval",
        ),
        _row("GET /metrics, every process (ms)", 1e3, "ms", None, scrape),
        _row("GET /ops/data (ms)", 1e3, "ms", None, data),
        _row("GET /ops/ with trend charts (ms)", 1e3, "ms", None, page),
    ]


def run(quick: bool) -> str:
    setup_django()
    process = psutil.Process()
    cpu_before, wall_before = cpu_seconds(process), time.monotonic()
    requests, queries, samples = (2000, 300, 10) if quick else (20000, 2000, 40)
    progress("monitoring: middleware overhead")
    rows = _middleware_rows(requests)
    progress("monitoring: query listener overhead")
    rows += _listener_rows(queries)
    progress("monitoring: recorder, /metrics, /ops/")
    rows += _recorder_rows(samples)
    cpu = cpu_seconds(process) - cpu_before
    wall = time.monotonic() - wall_before
    headers = ["what", "baseline p50", "baseline p95", "measured p50", "measured p95", "overhead (p50)"]
    body = table(headers, rows)
    return (
        "## Monitoring overhead\n\n"
        f"{body}\n\n"
        f"{requests} middleware calls, {queries} queries per client, {samples} recorder samples and scrapes; "
        f"the benchmark process used {cpu:.1f} s of CPU in {wall:.1f} s (one process, no separate load generator). "
        f"Per request the metrics middleware adds {rows[0][5]}; per MongoDB command, turning on pymongo's "
        f"command events adds {rows[1][5]} (our callbacks themselves {rows[2][3]} µs) to a {rows[1][1]} µs round "
        f"trip; a recorder sample takes {rows[3][5]}."
    )
