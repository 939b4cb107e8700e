"""Reads for the operator page: live figures, trends, alerts, index warnings."""

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.core.redis import redis_client
from apps.monitoring.figures import FIGURE_NAMES, FIGURES_BY_NAME, format_figure
from apps.monitoring.indexes import missing_indexes
from apps.monitoring.models import Alert, MetricSample
from apps.monitoring.recorder import latest_snapshot_key

logger = logging.getLogger(__name__)

# The trend charts: a title and the key figures drawn in it.
CHARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("API latency (ms)", ("api_p50_ms", "api_p95_ms", "api_p99_ms")),
    ("Database p95 (ms)", ("db_p95_ms",)),
    ("WebSocket clients", ("ws_clients",)),
    ("WebSocket frames/s", ("ws_frames_per_second",)),
    ("Ticks/s", ("tick_rate",)),
    ("Persister backlog", ("persister_backlog",)),
    ("Cache hit ratio", ("cache_hit_ratio",)),
    ("Celery queue", ("celery_queue_length",)),
    ("Memory and CPU (%)", ("memory_percent", "cpu_percent")),
    ("Open alerts", ("open_alerts",)),
)
CHART_WIDTH, CHART_HEIGHT = 300, 80
MAX_POINTS = 180
INDEX_CHECK_SECONDS = 60.0


@dataclass(frozen=True)
class Latest:
    recorded_at: datetime | None
    figures: dict[str, float | None]
    degraded: list[str]
    source: str  # "redis", "database" or "none"


def latest_figures_read() -> Latest:
    """Live figures from the Redis snapshot; the stored sample when Redis has none or is down."""
    try:
        raw = redis_client().get(latest_snapshot_key())
    except Exception as error:  # Redis down: MongoDB still has the samples
        logger.warning("ops page: Redis unavailable (%s); reading the stored sample", error)
        raw = None
    if raw:
        snapshot = json.loads(raw)
        return Latest(parse_datetime(snapshot["recorded_at"]), snapshot["figures"], snapshot["degraded"], "redis")
    sample = MetricSample.objects.filter(resolution=MetricSample.Resolution.RAW).first()
    if sample is None:
        return Latest(None, dict.fromkeys(FIGURE_NAMES), [], "none")
    return Latest(sample.recorded_at, dict(sample.figures), list(sample.degraded), "database")


def trend_series(*, resolution: int, since: datetime) -> dict[str, list[tuple[float, float | None]]]:
    """name -> [(unix seconds, value)] oldest first, thinned to at most MAX_POINTS points."""
    rows = list(
        MetricSample.objects.filter(resolution=resolution, recorded_at__gte=since)
        .order_by("recorded_at")
        .values_list("recorded_at", "figures")
    )
    step = max(1, len(rows) // MAX_POINTS + (1 if len(rows) % MAX_POINTS else 0))
    rows = rows[::step]
    return {name: [(at.timestamp(), figures.get(name)) for at, figures in rows] for name in FIGURE_NAMES}


def chart_polylines(
    series: dict[str, list[tuple[float, float | None]]], names: tuple[str, ...], *, start: float, end: float
) -> dict[str, Any]:
    """SVG polyline points for the named series, on one shared scale from 0 to the largest value."""
    values = [v for name in names for _, v in series.get(name, []) if v is not None]
    top = max(values, default=0.0) or 1.0
    span = max(end - start, 1.0)
    lines = []
    for name in names:
        points = [
            f"{(t - start) / span * CHART_WIDTH:.1f},{CHART_HEIGHT - v / top * CHART_HEIGHT:.1f}"
            for t, v in series.get(name, [])
            if v is not None
        ]
        lines.append({"name": name, "label": FIGURES_BY_NAME[name].label, "points": " ".join(points)})
    return {"top": format_figure(names[0], top), "lines": lines, "empty": not values}


def trends_read(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every chart over the last hour (raw samples) and the last day (5-minute rollups)."""
    now = now or timezone.now()
    windows = {
        "hour": (MetricSample.Resolution.RAW, now - timedelta(hours=1)),
        "day": (MetricSample.Resolution.ROLLUP, now - timedelta(days=1)),
    }
    series = {label: trend_series(resolution=res, since=since) for label, (res, since) in windows.items()}
    charts = []
    for title, names in CHARTS:
        drawn = [
            {"window": label, **chart_polylines(series[label], names, start=since.timestamp(), end=now.timestamp())}
            for label, (_, since) in windows.items()
        ]
        charts.append({"title": title, "figures": list(names), "windows": drawn})
    return charts


def open_alerts_read() -> list[dict[str, Any]]:
    alerts = Alert.objects.filter(resolved_at__isnull=True).select_related("rule").order_by("-opened_at")[:50]
    return [
        {
            "rule": alert.rule.key,
            "message": alert.message,
            "opened_at": alert.opened_at.isoformat(),
            "last_value": alert.last_value,
            "threshold": alert.rule.threshold,
        }
        for alert in alerts
    ]


_index_warnings: tuple[float, list[str]] = (0.0, [])


def index_warnings_read() -> list[str]:
    """Missing declared indexes (checked at most once a minute per process)."""
    global _index_warnings
    checked_at, warnings = _index_warnings
    if time.monotonic() - checked_at > INDEX_CHECK_SECONDS:
        try:
            warnings = [index.describe() for index in missing_indexes()]
        except Exception as error:  # the page must render even when the check cannot run
            warnings = [f"index check failed: {error}"]
        _index_warnings = (time.monotonic(), warnings)
    return warnings


def ops_snapshot() -> dict[str, Any]:
    """What the operator page shows, as JSON-ready data: every key figure, open alerts, warnings."""
    latest = latest_figures_read()
    age = (timezone.now() - latest.recorded_at).total_seconds() if latest.recorded_at else None
    return {
        "recorded_at": latest.recorded_at.isoformat() if latest.recorded_at else None,
        "age_seconds": None if age is None else round(age, 1),
        "stale": age is None or age > settings.MONITORING_SAMPLE_SECONDS * 4,
        "source": latest.source,
        "degraded": latest.degraded,
        "figures": [
            {
                "name": name,
                "label": FIGURES_BY_NAME[name].label,
                "value": latest.figures.get(name),
                "display": format_figure(name, latest.figures.get(name)),
            }
            for name in FIGURE_NAMES
        ],
        "alerts": open_alerts_read(),
        "index_warnings": index_warnings_read(),
    }
