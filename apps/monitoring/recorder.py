"""The performance recorder: every few seconds (a beat task) it samples the key figures into MongoDB.

Sources: the Prometheus files every process writes (latency histograms, feed
and tick counters, gauges), Redis INFO, the Celery broker's queue lengths,
MongoDB (dead letters, open alerts) and psutil (system memory and CPU). A
source that fails is named in the sample's `degraded` list, counted in
RECORDER_DEGRADED and logged; the psutil figures, which need nothing but the
host, are always there (the "basic process metrics" fallback).

Rates and percentiles are deltas from the previous raw sample's `counters`, so
they are correct whichever worker process records and survive restarts.
Every 5 minutes the previous window is averaged into one rollup sample (the
day chart reads 288 of them instead of 17 280 raw ones).
"""

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import psutil
from celery import current_app
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import ChannelError
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector

from apps.core.indexes import IN_LIST_MAX
from apps.core.jobs import dead_letters_pending
from apps.core.metrics import (
    CELERY_QUEUE_LENGTH,
    DEAD_LETTERS_PENDING,
    RECORDER_DEGRADED,
    REDIS_CONNECTIONS,
    REDIS_MAXMEMORY,
    REDIS_MEMORY,
)
from apps.core.redis import key, redis_client, redis_memory_status
from apps.monitoring import figures as fig
from apps.monitoring.instrumentation import multiprocess_dir
from apps.monitoring.models import Alert, MetricSample

logger = logging.getLogger(__name__)

LATEST_KEY_TTL_SECONDS = 120
CACHE_HIT_RESULTS = frozenset({"hit", "l1_hit", "l2_hit"})
Figures = dict[str, float | None]


def latest_snapshot_key() -> str:
    return key("monitoring", "latest")


# --- sources --------------------------------------------------------------------------------
def prometheus_reading() -> tuple[dict[str, Any], Figures]:
    """Cumulative counters (summed over processes and labels) and current gauges from every process."""
    directory = multiprocess_dir()
    metrics = MultiProcessCollector(None, directory).collect() if directory else REGISTRY.collect()
    buckets: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    totals: dict[str, float] = defaultdict(float)
    for metric in metrics:
        for sample in metric.samples:
            if sample.name in {"trading_api_request_seconds_bucket", "trading_db_query_seconds_bucket"}:
                buckets[sample.name.removesuffix("_seconds_bucket").removeprefix("trading_")][sample.labels["le"]] += (
                    sample.value
                )
            elif sample.name == "trading_cache_requests_total":
                totals["cache_lookups"] += sample.value
                if sample.labels.get("result") in CACHE_HIT_RESULTS:
                    totals["cache_hits"] += sample.value
            else:
                totals[sample.name] += sample.value
    counters = {
        "api_buckets": dict(buckets["api_request"]),
        "db_buckets": dict(buckets["db_query"]),
        "ws_frames": totals["trading_ws_frames_total"],
        "ws_bytes": totals["trading_ws_bytes_total"],
        "ws_errors": totals["trading_ws_errors_total"],
        "ticks": totals["trading_ticks_generated_total"],
        "cache_hits": totals["cache_hits"],
        "cache_lookups": totals["cache_lookups"],
    }
    gauges: Figures = {
        "ws_clients": totals["trading_ws_connections"],
        "persister_backlog": totals["trading_persister_backlog"],
        "persister_lag_seconds": totals["trading_persister_lag_seconds"],
    }
    return counters, gauges


def system_reading() -> tuple[dict[str, Any], Figures]:
    cpu = psutil.cpu_times()
    idle = cpu.idle + getattr(cpu, "iowait", 0.0)
    total = sum(cpu)
    return {"cpu_busy": total - idle, "cpu_total": total}, {"memory_percent": psutil.virtual_memory().percent}


def redis_reading() -> Figures:
    status = redis_memory_status()
    connections = int(redis_client().info("clients")["connected_clients"])
    REDIS_MEMORY.set(status.used_memory)
    REDIS_MAXMEMORY.set(status.maxmemory)
    REDIS_CONNECTIONS.set(connections)
    return {"redis_memory_ratio": status.ratio, "redis_connections": float(connections)}


def celery_reading() -> Figures:
    app = current_app
    waiting = 0
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        for name in app.amqp.queues:
            try:
                count = int(channel.queue_declare(queue=name, passive=True).message_count)
            except ChannelError:  # the Redis transport reports an empty queue (no list key) as not found
                count = 0
            CELERY_QUEUE_LENGTH.labels(queue=name).set(count)
            waiting += count
    return {"celery_queue_length": float(waiting)}


def database_reading() -> Figures:
    pending = dead_letters_pending()
    DEAD_LETTERS_PENDING.set(pending)
    return {
        "dead_letters": float(pending),
        "open_alerts": float(Alert.objects.filter(resolved_at__isnull=True).count()),
    }


# --- arithmetic ---------------------------------------------------------------------------------
def derived_figures(previous: Mapping[str, Any] | None, current: Mapping[str, Any], seconds: float) -> Figures:
    """Rates, ratios and percentiles over the interval between two cumulative readings."""
    previous = previous or {}
    found: Figures = {}
    if "api_buckets" in current:
        api = fig.bucket_delta(previous.get("api_buckets"), current["api_buckets"])
        for name, fraction in (("api_p50_ms", 0.5), ("api_p95_ms", 0.95), ("api_p99_ms", 0.99)):
            value = fig.quantile(fraction, api) if previous.get("api_buckets") is not None else None
            found[name] = None if value is None else value * 1000
        db = fig.bucket_delta(previous.get("db_buckets"), current["db_buckets"])
        db_p95 = fig.quantile(0.95, db) if previous.get("db_buckets") is not None else None
        found["db_p95_ms"] = None if db_p95 is None else db_p95 * 1000
        api_total = fig.rate(_inf(previous.get("api_buckets")), _inf(current["api_buckets"]) or 0.0, seconds)
        found["api_requests_per_second"] = api_total
        found["db_ops_per_second"] = fig.rate(
            _inf(previous.get("db_buckets")), _inf(current["db_buckets"]) or 0, seconds
        )
        for name, counter in (
            ("ws_frames_per_second", "ws_frames"),
            ("ws_bytes_per_second", "ws_bytes"),
            ("ws_errors_per_second", "ws_errors"),
            ("tick_rate", "ticks"),
        ):
            found[name] = fig.rate(previous.get(counter), current[counter], seconds)
        if "cache_lookups" in previous:
            hits = fig.counter_delta(previous["cache_hits"], current["cache_hits"])
            found["cache_hit_ratio"] = fig.ratio(
                hits, fig.counter_delta(previous["cache_lookups"], current["cache_lookups"])
            )
    if "cpu_total" in current and "cpu_total" in previous:
        busy = fig.counter_delta(previous["cpu_busy"], current["cpu_busy"])
        ratio = fig.ratio(busy, fig.counter_delta(previous["cpu_total"], current["cpu_total"]))
        found["cpu_percent"] = None if ratio is None else ratio * 100
    return found


def _inf(buckets: Mapping[str, float] | None) -> float | None:
    return None if buckets is None else buckets.get("+Inf", 0.0)


# --- the sample -----------------------------------------------------------------------------------
def _read(name: str, source: Callable[[], Any], degraded: list[str]) -> Any:
    try:
        return source()
    except Exception as error:  # any failing source degrades the sample, never the recorder
        degraded.append(name)
        RECORDER_DEGRADED.labels(source=name).inc()
        logger.warning("performance recorder: source %s failed (%s); recording the figures it can", name, error)
        return None


def _previous_raw_sample() -> MetricSample | None:
    return MetricSample.objects.filter(resolution=MetricSample.Resolution.RAW).only("recorded_at", "counters").first()


def sample_record(*, now: datetime | None = None) -> MetricSample:
    """Take one raw sample of every key figure and store it (plus the previous window's rollup when due).

    With MongoDB down the sample is still published to Redis for the ops page (unsaved, `mongodb` degraded).
    """
    now = now or timezone.now()
    degraded: list[str] = []
    previous = _read("mongodb", _previous_raw_sample, degraded)
    figures: Figures = dict.fromkeys(fig.FIGURE_NAMES)
    counters: dict[str, Any] = {}
    system_counters, system_figures = system_reading()
    counters.update(system_counters)
    figures.update(system_figures)
    reading = _read("prometheus", prometheus_reading, degraded)
    if reading is not None:
        counters.update(reading[0])
        figures.update(reading[1])
    for name, source in (("redis", redis_reading), ("celery", celery_reading), ("mongodb", database_reading)):
        if name in degraded:
            continue  # already failed once in this sample; do not wait for it twice
        found = _read(name, source, degraded)
        if found is not None:
            figures.update(found)
    seconds = (now - previous.recorded_at).total_seconds() if previous is not None else 0.0
    figures.update(derived_figures(previous.counters if previous is not None else None, counters, seconds))
    sample = MetricSample(recorded_at=now, figures=figures, counters=counters, degraded=degraded)
    if "mongodb" not in degraded:
        _read("mongodb", sample.save, degraded)  # `degraded` is the sample's own list: a failure shows on it
    if "mongodb" not in degraded:
        _read("mongodb", lambda: rollup_record(now=now), degraded)
    _publish_latest(sample)
    return sample


def _publish_latest(sample: MetricSample) -> None:
    """The ops page reads live figures from Redis; MongoDB is its fallback."""
    snapshot = {"recorded_at": sample.recorded_at.isoformat(), "figures": sample.figures, "degraded": sample.degraded}
    try:
        redis_client().set(latest_snapshot_key(), json.dumps(snapshot), ex=LATEST_KEY_TTL_SECONDS)
    except Exception as error:  # Redis down: the page falls back to the stored sample
        logger.warning("could not publish the latest sample to Redis: %s", error)


def rollup_window(moment: datetime) -> datetime:
    seconds = settings.MONITORING_ROLLUP_SECONDS
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)


def average_figures(samples: list[Mapping[str, float | None]]) -> Figures:
    averaged: Figures = {}
    for name in fig.FIGURE_NAMES:
        values = [s[name] for s in samples if s.get(name) is not None]
        averaged[name] = sum(values) / len(values) if values else None  # type: ignore[arg-type]
    return averaged


def rollup_record(*, now: datetime) -> MetricSample | None:
    """Average the previous complete 5-minute window into one rollup sample, once."""
    window_end = rollup_window(now)
    window_start = window_end - timedelta(seconds=settings.MONITORING_ROLLUP_SECONDS)
    rollups = MetricSample.objects.filter(resolution=MetricSample.Resolution.ROLLUP)
    if rollups.filter(recorded_at__gte=window_start).exists():
        return None
    raw = MetricSample.objects.filter(
        resolution=MetricSample.Resolution.RAW, recorded_at__gte=window_start, recorded_at__lt=window_end
    ).values_list("figures", "degraded")
    rows = list(raw)
    if not rows:
        return None
    degraded = sorted({source for _, sources in rows for source in sources})
    return MetricSample.objects.create(
        recorded_at=window_start,
        resolution=MetricSample.Resolution.ROLLUP,
        figures=average_figures([figures for figures, _ in rows]),
        degraded=degraded,
    )


def samples_prune(*, now: datetime | None = None, batch: int = IN_LIST_MAX, max_batches: int = 500) -> int:
    """Delete samples past retention, `batch` at a time and at most `max_batches` per call; returns the count."""
    now = now or timezone.now()
    limits = {
        MetricSample.Resolution.RAW: now - timedelta(hours=settings.MONITORING_RETENTION_HOURS),
        MetricSample.Resolution.ROLLUP: now - timedelta(days=settings.MONITORING_ROLLUP_RETENTION_DAYS),
    }
    deleted = 0
    for resolution, cutoff in limits.items():
        for _ in range(max_batches):
            old = MetricSample.objects.filter(resolution=resolution, recorded_at__lt=cutoff)
            ids = list(old.order_by("recorded_at").values_list("pk", flat=True)[:batch])
            if not ids:
                break
            deleted += MetricSample.objects.filter(pk__in=ids).delete()[0]
    return deleted
