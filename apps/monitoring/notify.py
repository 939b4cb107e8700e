"""Alert notifications: e-mail through Django's mail settings, and an optional webhook behind a breaker."""

import json
import logging
import urllib.request
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail

from apps.core.breaker import CircuitBreaker, CircuitOpen
from apps.core.metrics import ALERT_NOTIFICATIONS

logger = logging.getLogger(__name__)


@cache
def webhook_breaker() -> CircuitBreaker:
    return CircuitBreaker(
        failures_to_open=settings.ALERT_WEBHOOK_FAILURES_TO_OPEN,
        cooldown_seconds=settings.ALERT_WEBHOOK_COOLDOWN_SECONDS,
    )


def alert_recipients() -> list[str]:
    if settings.ALERT_EMAILS:
        return list(settings.ALERT_EMAILS)
    staff = User.objects.filter(is_staff=True, is_active=True).exclude(email="")
    return sorted(set(staff.values_list("email", flat=True)))


def _post_json(url: str, payload: dict[str, Any]) -> None:
    # S310: settings accept only http(s) URLs for ALERT_WEBHOOK_URL, so no file: or custom scheme gets here.
    request = urllib.request.Request(  # noqa: S310
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    # Accepted bandit finding B310: ALERT_WEBHOOK_URL is checked to be http(s) at start-up (trading/conf/monitoring.py).
    with urllib.request.urlopen(request, timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310  # nosec B310
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered {response.status}")


def notify_email(subject: str, body: str) -> str:
    recipients = alert_recipients()
    if not recipients:
        result = "skipped"
    else:
        try:
            send_mail(subject, body, None, recipients)
            result = "sent"
        except Exception as error:  # a mail failure must not stop the evaluation
            logger.warning("alert e-mail failed: %s", error)
            result = "failed"
    ALERT_NOTIFICATIONS.labels(channel="email", result=result).inc()
    return result


def notify_webhook(payload: dict[str, Any]) -> str:
    url = settings.ALERT_WEBHOOK_URL
    if not url:
        return "skipped"
    try:
        webhook_breaker().call(lambda: _post_json(url, payload))
        result = "sent"
    except CircuitOpen:
        result = "circuit_open"
    except Exception as error:  # the receiver is down or slow: count it, the breaker decides
        logger.warning("alert webhook failed: %s", error)
        result = "failed"
    ALERT_NOTIFICATIONS.labels(channel="webhook", result=result).inc()
    return result


def notify(event: str, payload: dict[str, Any]) -> dict[str, str]:
    """Send one alert event ("opened" or "resolved") on every channel; returns each channel's outcome."""
    subject = f"[trading] alert {event}: {payload['rule']}"
    body = "\n".join(f"{name}: {value}" for name, value in payload.items())
    return {"email": notify_email(subject, body), "webhook": notify_webhook({"event": event, **payload})}
