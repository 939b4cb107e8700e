"""Alert evaluation (pure), and the service that opens, refreshes, resolves and notifies."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.monitoring.alerts import RuleSpec, evaluate
from apps.monitoring.models import Alert, AlertRule, MetricSample
from apps.monitoring.services import alert_rules_seed, alerts_evaluate

DEFAULT_RULES = [
    RuleSpec("memory_percent", "memory_percent", 85.0),
    RuleSpec("api_p95_ms", "api_p95_ms", 200.0),
    RuleSpec("db_p95_ms", "db_p95_ms", 100.0),
    RuleSpec("redis_memory_ratio", "redis_memory_ratio", 0.8),
    RuleSpec("persister_backlog", "persister_backlog", 50_000.0),
    RuleSpec("dead_letters", "dead_letters", 0.0),
    RuleSpec("ws_errors_per_second", "ws_errors_per_second", 1.0),
]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

maybe_value = st.one_of(st.none(), st.floats(min_value=0, max_value=1e6, allow_nan=False))


@settings(max_examples=200)
@given(
    memory=st.floats(min_value=0, max_value=100, allow_nan=False),
    others=st.dictionaries(
        st.sampled_from([r.figure for r in DEFAULT_RULES if r.figure != "memory_percent"]), maybe_value
    ),
)
def test_memory_above_85_percent_always_raises_an_alert(memory: float, others: dict[str, float | None]) -> None:
    """Feature: trading-performance-optimization, Property 25: For any system state where memory usage exceeds 85%,
    alerts should be generated"""
    result = evaluate(DEFAULT_RULES, {**others, "memory_percent": memory}, open_keys=[])
    assert ("memory_percent" in result.opened) == (memory > 85)


@settings(max_examples=200)
@given(figures=st.fixed_dictionaries({rule.figure: maybe_value for rule in DEFAULT_RULES}))
def test_every_figure_above_its_threshold_raises_its_alert(figures: dict[str, float | None]) -> None:
    """Feature: trading-performance-optimization, Property 32: For any performance metric exceeding defined thresholds,
    alerts should be generated for administrators"""
    result = evaluate(DEFAULT_RULES, figures, open_keys=[])
    for rule in DEFAULT_RULES:
        value = figures[rule.figure]
        assert (rule.key in result.opened) == (value is not None and value > rule.threshold)
    assert not result.resolved and not result.still_open


@settings(max_examples=200)
@given(stream=st.lists(st.one_of(st.none(), st.floats(min_value=0, max_value=200, allow_nan=False)), max_size=60))
def test_a_synthetic_metric_stream_fires_once_per_episode_and_resolves_itself(stream: list[float | None]) -> None:
    """Feature: trading-performance-optimization, Property 32: For any performance metric exceeding defined thresholds,
    alerts should be generated for administrators"""
    rule = RuleSpec("api_p95_ms", "api_p95_ms", 100.0)
    open_keys: set[str] = set()
    fired = 0
    known_state = False  # the last known condition (a missing value keeps it)
    expected_fires = 0
    for value in stream:
        if value is not None:
            if value > 100 and not known_state:
                expected_fires += 1
            known_state = value > 100
        result = evaluate([rule], {"api_p95_ms": value}, open_keys)
        fired += len(result.opened)
        open_keys |= set(result.opened)
        open_keys -= set(result.resolved)
        assert (rule.key in open_keys) == known_state
    assert fired == expected_fires


def test_a_disabled_rule_resolves_its_open_alert_and_never_opens() -> None:
    rule = RuleSpec("memory_percent", "memory_percent", 85.0, enabled=False)
    assert evaluate([rule], {"memory_percent": 99.0}, ["memory_percent"]).resolved == {"memory_percent": 99.0}
    assert not evaluate([rule], {"memory_percent": 99.0}, []).opened


# --- the service --------------------------------------------------------------------------
@pytest.fixture
def staff_with_email(db: None) -> None:
    get_user_model().objects.create_user("ops", "ops@example.com", "ops-pass", is_staff=True)


def test_default_rules_are_seeded_once_and_edits_survive(db: None) -> None:
    assert alert_rules_seed() == 7
    AlertRule.objects.filter(key="memory_percent").update(threshold=50)
    assert alert_rules_seed() == 0
    assert AlertRule.objects.get(key="memory_percent").threshold == 50


def test_an_alert_fires_once_stays_open_and_resolves_by_itself(staff_with_email: None) -> None:
    first = alerts_evaluate(figures={"memory_percent": 91.0}, now=NOW)
    assert first["opened"] == ["memory_percent"]
    second = alerts_evaluate(figures={"memory_percent": 95.0}, now=NOW + timedelta(seconds=15))
    assert second["opened"] == [] and second["still_open"] == ["memory_percent"]
    alert = Alert.objects.get()
    assert alert.resolved_at is None and alert.last_value == 95.0 and alert.peak_value == 95.0
    third = alerts_evaluate(figures={"memory_percent": 40.0}, now=NOW + timedelta(seconds=30))
    assert third["resolved"] == ["memory_percent"]
    alert.refresh_from_db()
    assert alert.resolved_at == NOW + timedelta(seconds=30)
    assert Alert.objects.count() == 1
    subjects = [message.subject for message in mail.outbox]
    assert subjects == ["[trading] alert opened: memory_percent", "[trading] alert resolved: memory_percent"]
    assert mail.outbox[0].to == ["ops@example.com"]


def test_a_new_episode_after_resolution_opens_a_new_alert(staff_with_email: None) -> None:
    for offset, memory in enumerate([90.0, 50.0, 92.0]):
        alerts_evaluate(figures={"memory_percent": memory}, now=NOW + timedelta(seconds=15 * offset))
    assert Alert.objects.count() == 2
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 1


def test_a_missing_figure_keeps_the_alert_open(staff_with_email: None) -> None:
    alerts_evaluate(figures={"dead_letters": 3.0}, now=NOW)
    alerts_evaluate(figures={}, now=NOW + timedelta(seconds=15))
    assert Alert.objects.get().resolved_at is None


def test_evaluation_reads_the_latest_sample_and_ignores_a_stale_one(staff_with_email: None) -> None:
    MetricSample.objects.create(recorded_at=NOW, figures={"memory_percent": 97.0})
    assert alerts_evaluate(now=NOW + timedelta(seconds=5))["opened"] == ["memory_percent"]
    MetricSample.objects.create(recorded_at=NOW + timedelta(seconds=10), figures={"memory_percent": 10.0})
    assert alerts_evaluate(now=NOW + timedelta(hours=1))["resolved"] == []  # an hour-old sample says nothing
