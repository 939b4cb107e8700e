"""Alert evaluation (pure), and the service that opens, refreshes, resolves and notifies."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core import mail
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.monitoring.alerts import RuleSpec, evaluate
from apps.monitoring.models import Alert, AlertRule, MetricSample
from apps.monitoring.services import alert_rules_seed, alerts_evaluate

# The rules as production seeds them: thresholds from settings (ALERT_THRESHOLDS), never copied here.
DEFAULT_RULES = [RuleSpec(key, key, threshold) for key, threshold in django_settings.ALERT_THRESHOLDS.items()]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

maybe_value = st.one_of(st.none(), st.floats(min_value=0, max_value=1e6, allow_nan=False))


def test_the_settings_thresholds_are_the_documents() -> None:
    assert django_settings.ALERT_THRESHOLDS["memory_percent"] == 85.0
    assert django_settings.ALERT_THRESHOLDS["api_p95_ms"] == 200.0


@pytest.mark.django_db
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(memory=st.floats(min_value=0, max_value=100, allow_nan=False))
def test_memory_above_85_percent_always_raises_an_alert(
    staff_with_email: None, monkeypatch: pytest.MonkeyPatch, memory: float
) -> None:
    """Feature: trading-performance-optimization, Property 25: For any system state where memory usage exceeds 85%,
    alerts should be generated

    The host reports `memory` percent in use (psutil); the recorder's system source reads it, the real rules
    (seeded from settings) evaluate it, and the staff are mailed when the alert opens."""
    from apps.monitoring import recorder

    monkeypatch.setattr(recorder.psutil, "virtual_memory", lambda: SimpleNamespace(percent=memory))
    Alert.objects.all().delete()
    mail.outbox.clear()
    _, figures = recorder.system_reading()
    changes = alerts_evaluate(figures=figures, now=NOW)
    raised = memory > django_settings.ALERT_THRESHOLDS["memory_percent"]
    assert ("memory_percent" in changes["opened"]) == raised == (memory > 85)
    stored = Alert.objects.filter(resolved_at__isnull=True).select_related("rule")
    assert [alert.rule.key for alert in stored] == (["memory_percent"] if raised else [])
    opened_mails = [m for m in mail.outbox if m.subject == "[trading] alert opened: memory_percent"]
    assert len(opened_mails) == int(raised)


@pytest.mark.django_db
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    figures=st.fixed_dictionaries(
        {
            rule.figure: st.one_of(
                st.none(),
                st.sampled_from([rule.threshold, rule.threshold + 0.001, max(0.0, rule.threshold - 0.001)]),
                st.floats(min_value=0, max_value=max(10.0, rule.threshold * 3), allow_nan=False),
            )
            for rule in DEFAULT_RULES
        }
    )
)
def test_every_figure_above_its_threshold_raises_its_alert(
    staff_with_email: None, figures: dict[str, float | None]
) -> None:
    """Feature: trading-performance-optimization, Property 32: For any performance metric exceeding defined thresholds,
    alerts should be generated for administrators

    The real service: rules seeded from settings, alerts stored and mailed to the staff; figures drawn around
    each threshold (at it, just above, just below) and anywhere else."""
    Alert.objects.all().delete()
    mail.outbox.clear()
    changes = alerts_evaluate(figures=figures, now=NOW)
    expected = sorted(
        key
        for key, threshold in django_settings.ALERT_THRESHOLDS.items()
        if figures.get(key) is not None and figures[key] > threshold  # type: ignore[operator]
    )
    assert changes["opened"] == expected
    stored = Alert.objects.filter(resolved_at__isnull=True).select_related("rule")
    assert sorted(alert.rule.key for alert in stored) == expected
    assert sorted(m.subject.rsplit(" ", 1)[-1] for m in mail.outbox) == expected  # each one told the staff
    assert all(m.to == ["ops@example.com"] for m in mail.outbox)


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
