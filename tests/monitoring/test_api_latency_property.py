"""Property 15 is a speed target; `bench/orders.py` measures it. Here: the system notices when it is missed."""

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.core.metrics import LATENCY_BUCKETS
from apps.monitoring import figures
from apps.monitoring.alerts import RuleSpec, evaluate

API_P95_RULE = RuleSpec(key="api_p95", figure="api_p95_ms", threshold=200.0)
latencies = st.floats(min_value=0.0, max_value=10.0, allow_nan=False).map(lambda s: round(s, 4))


def cumulative_buckets(observations: list[float]) -> dict[str, float]:
    """What the API latency histogram holds after `observations` (Prometheus' cumulative `le` buckets)."""
    bounds = [*LATENCY_BUCKETS, float("inf")]
    return {str(bound): float(sum(1 for value in observations if value <= bound)) for bound in bounds}


@settings(max_examples=300)
@given(st.lists(latencies, min_size=1, max_size=400))
def test_the_api_p95_alert_fires_exactly_when_fewer_than_95_percent_finish_within_200ms(
    observations: list[float],
) -> None:
    """Feature: trading-performance-optimization, Property 15: For any set of API requests, 95% should complete
    within 200ms — the recorder's p95 (from the latency histogram) and the API p95 alert rule hold the system to it:
    the alert opens exactly when fewer than 95 % of the requests finished within 200 ms."""
    p95_seconds = figures.quantile(0.95, cumulative_buckets(observations))  # what the recorder computes
    assert p95_seconds is not None
    within = sum(1 for value in observations if value <= 0.2)
    target_met = within >= 0.95 * len(observations)

    result = evaluate([API_P95_RULE], {"api_p95_ms": p95_seconds * 1000}, open_keys=[])

    assert ("api_p95" in result.opened) == (not target_met)
