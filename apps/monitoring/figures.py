"""The key figures: their catalogue, and the pure arithmetic that turns counters into them.

Percentiles come from Prometheus histogram *deltas* between two samples: the
recorder keeps each histogram's cumulative bucket counts (summed over every
process and label) and estimates a quantile of the requests in between by
linear interpolation inside the bucket holding it, as Prometheus'
histogram_quantile does. The hot path pays nothing beyond the histogram it
already updates; the price is bucket resolution (a p95 between the 100 ms and
200 ms bounds is interpolated, not measured).
"""

from collections.abc import Mapping
from dataclasses import dataclass

Buckets = Mapping[str, float]  # upper bound ("0.1", "+Inf") -> cumulative count


@dataclass(frozen=True)
class KeyFigure:
    name: str
    label: str
    unit: str
    digits: int = 1


KEY_FIGURES: tuple[KeyFigure, ...] = (
    KeyFigure("api_p50_ms", "API latency p50", "ms"),
    KeyFigure("api_p95_ms", "API latency p95", "ms"),
    KeyFigure("api_p99_ms", "API latency p99", "ms"),
    KeyFigure("api_requests_per_second", "API requests", "/s"),
    KeyFigure("db_p95_ms", "Database p95", "ms"),
    KeyFigure("db_ops_per_second", "Database commands", "/s"),
    KeyFigure("ws_clients", "WebSocket clients", "", 0),
    KeyFigure("ws_frames_per_second", "WebSocket frames", "/s"),
    KeyFigure("ws_bytes_per_second", "WebSocket throughput", "B/s", 0),
    KeyFigure("ws_errors_per_second", "WebSocket errors", "/s", 2),
    KeyFigure("tick_rate", "Tick rate", "/s"),
    KeyFigure("persister_backlog", "Persister backlog", "ticks", 0),
    KeyFigure("persister_lag_seconds", "Persister lag", "s", 2),
    KeyFigure("cache_hit_ratio", "Cache hit ratio", "", 3),
    KeyFigure("celery_queue_length", "Celery queue", "jobs", 0),
    KeyFigure("dead_letters", "Dead letters", "", 0),
    KeyFigure("memory_percent", "Memory", "%"),
    KeyFigure("cpu_percent", "CPU", "%"),
    KeyFigure("redis_memory_ratio", "Redis memory / maxmemory", "", 3),
    KeyFigure("redis_connections", "Redis connections", "", 0),
    KeyFigure("open_alerts", "Open alerts", "", 0),
)
FIGURE_NAMES = tuple(figure.name for figure in KEY_FIGURES)
FIGURES_BY_NAME = {figure.name: figure for figure in KEY_FIGURES}


def format_figure(name: str, value: float | None) -> str:
    if value is None:
        return "—"
    figure = FIGURES_BY_NAME[name]
    number = f"{value:,.{figure.digits}f}"
    return f"{number} {figure.unit}".strip() if figure.unit not in {"%", "/s"} else f"{number}{figure.unit}"


def counter_delta(previous: float | None, current: float) -> float:
    """Increase of a cumulative counter; a smaller value means the counters restarted from zero."""
    if previous is None or current < previous:
        return current
    return current - previous


def bucket_delta(previous: Buckets | None, current: Buckets) -> dict[str, float]:
    previous = previous or {}
    if any(current.get(bound, 0.0) < count for bound, count in previous.items()):
        previous = {}  # a restart reset the histogram
    return {bound: current[bound] - previous.get(bound, 0.0) for bound in current}


def quantile(fraction: float, buckets: Buckets) -> float | None:
    """The `fraction` quantile (seconds) of observations given cumulative bucket counts; None if there are none."""
    ordered = sorted(((float(bound), count) for bound, count in buckets.items()), key=lambda item: item[0])
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = fraction * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank and count > lower_count:
            if bound == float("inf"):
                return lower_bound  # beyond the last finite bound: report that bound, like Prometheus
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def rate(previous: float | None, current: float, seconds: float) -> float | None:
    if previous is None or seconds <= 0:
        return None
    return counter_delta(previous, current) / seconds


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None
