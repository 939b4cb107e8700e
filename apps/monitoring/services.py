"""Writes of the monitoring app: seeding alert rules and applying an alert evaluation."""

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_mongodb_backend import transaction

from apps.core.metrics import ALERTS_FIRED, ALERTS_OPEN
from apps.monitoring.alerts import DEFAULT_RULE_DESCRIPTIONS, RuleSpec, alert_message, evaluate
from apps.monitoring.models import Alert, AlertRule, MetricSample
from apps.monitoring.notify import notify

logger = logging.getLogger(__name__)

STALE_AFTER_SAMPLES = 4  # a sample older than this many intervals says nothing about now


def alert_rules_seed() -> int:
    """Create the default rules missing from the database (never overwrites an operator's edits)."""
    existing = set(AlertRule.objects.values_list("key", flat=True))
    created = [
        AlertRule(key=name, figure=name, threshold=threshold, description=DEFAULT_RULE_DESCRIPTIONS.get(name, ""))
        for name, threshold in settings.ALERT_THRESHOLDS.items()
        if name not in existing
    ]
    AlertRule.objects.bulk_create(created)
    return len(created)


def latest_figures(*, now: datetime) -> dict[str, float | None]:
    """The newest raw sample's figures, or nothing when the recorder has been silent too long."""
    sample = MetricSample.objects.filter(resolution=MetricSample.Resolution.RAW).only("recorded_at", "figures").first()
    max_age = timedelta(seconds=settings.MONITORING_SAMPLE_SECONDS * STALE_AFTER_SAMPLES)
    if sample is None or now - sample.recorded_at > max_age:
        logger.warning("alert evaluation: no recent performance sample; alerts keep their state")
        return {}
    return dict(sample.figures)


def _payload(alert: Alert, rule: AlertRule) -> dict[str, Any]:
    return {
        "rule": rule.key,
        "figure": rule.figure,
        "threshold": rule.threshold,
        "value": alert.last_value,
        "message": alert.message,
        "opened_at": alert.opened_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def alerts_evaluate(
    *, figures: Mapping[str, float | None] | None = None, now: datetime | None = None
) -> dict[str, list[str]]:
    """Open, refresh and resolve alerts for the latest figures; notify after commit. Returns rule keys by change."""
    now = now or timezone.now()
    alert_rules_seed()
    figures = latest_figures(now=now) if figures is None else figures
    rules = {rule.key: rule for rule in AlertRule.objects.all()}
    open_alerts = {
        alert.rule.key: alert for alert in Alert.objects.filter(resolved_at__isnull=True).select_related("rule")
    }
    specs = [RuleSpec(r.key, r.figure, r.threshold, r.enabled) for r in rules.values()]
    result = evaluate(specs, figures, open_alerts)
    events: list[tuple[str, Alert, AlertRule]] = []
    with transaction.atomic():
        for key, value in result.opened.items():
            rule = rules[key]
            message = alert_message(RuleSpec(key, rule.figure, rule.threshold), value, rule.description)
            alert = Alert.objects.create(rule=rule, opened_at=now, last_value=value, peak_value=value, message=message)
            events.append(("opened", alert, rule))
        for key, value in result.still_open.items():
            alert = open_alerts[key]
            alert.last_value = value
            alert.peak_value = max(value, alert.peak_value if alert.peak_value is not None else value)
            alert.save(update_fields=["last_value", "peak_value"])
        for key, maybe_value in result.resolved.items():
            alert = open_alerts[key]
            alert.resolved_at = now
            alert.last_value = maybe_value if maybe_value is not None else alert.last_value
            alert.save(update_fields=["resolved_at", "last_value"])
            events.append(("resolved", alert, alert.rule))
    for key in rules:
        is_open = (key in open_alerts and key not in result.resolved) or key in result.opened
        ALERTS_OPEN.labels(rule=key).set(1 if is_open else 0)
    for event, alert, rule in events:
        if event == "opened":
            ALERTS_FIRED.labels(rule=rule.key).inc()
            logger.warning("alert opened: %s", alert.message)
        else:
            logger.info("alert resolved: %s", rule.key)
        notify(event, _payload(alert, rule))
    return {
        "opened": sorted(result.opened),
        "still_open": sorted(result.still_open),
        "resolved": sorted(result.resolved),
    }
