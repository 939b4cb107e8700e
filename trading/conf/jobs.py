"""Celery: the broker, task policy, the invoice outbox and the whole beat schedule (each app's task names)."""

from typing import Any

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from trading.conf.env import env, positive_int
from trading.conf.monitoring import MONITORING_ALERT_SECONDS, MONITORING_SAMPLE_SECONDS
from trading.conf.stores import REDIS_KEY_PREFIX, REDIS_POOL_MAX, REDIS_URL

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_POOL_LIMIT = REDIS_POOL_MAX
# A message a worker took and never acknowledged (the worker was killed) is delivered again after this.
# A few times the longest job, and longer than the longest retry delay (apps/core/jobs.py: 300 s), since
# the Redis transport also redelivers a retry still waiting for its countdown.
CELERY_VISIBILITY_TIMEOUT = positive_int("CELERY_VISIBILITY_TIMEOUT", 600)
if CELERY_VISIBILITY_TIMEOUT <= 330:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT: must exceed the longest retry delay (300 s), got {CELERY_VISIBILITY_TIMEOUT}"
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:",
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {}
CELERY_TIMEZONE = "UTC"

# --- Precomputed reads, cache warm-up, price-history retention (issue 6) -----------------
PRICE_HISTORY_RETENTION_DAYS = positive_int("PRICE_HISTORY_RETENTION_DAYS", 7)
PRECOMPUTE_SECONDS = positive_int("PRECOMPUTE_SECONDS", 60)  # Property 11: at least every minute
if PRECOMPUTE_SECONDS > 60:
    raise ImproperlyConfigured(f"PRECOMPUTE_SECONDS: at most 60 (leaderboard freshness), got {PRECOMPUTE_SECONDS}")
CELERY_BEAT_SCHEDULE.update(
    {
        "leaderboard-rebuild": {
            "task": "leaderboard.rebuild",
            "schedule": float(PRECOMPUTE_SECONDS),
            "options": {"expires": PRECOMPUTE_SECONDS},  # a missed run is replaced by the next one
        },
        "analytics-refresh": {
            "task": "analytics.refresh",
            "schedule": float(PRECOMPUTE_SECONDS),
            "options": {"expires": PRECOMPUTE_SECONDS},
        },
        "cache-warm": {"task": "core.warm_cache", "schedule": 240.0, "options": {"expires": 240}},
        # Daily, at a quiet hour (Property 29).
        "prices-cleanup": {"task": "market.cleanup_prices", "schedule": crontab(hour=3, minute=17)},
    }
)

CELERY_BEAT_SCHEDULE.update(
    {
        "monitoring-record-sample": {
            "task": "monitoring.record_sample",
            "schedule": float(MONITORING_SAMPLE_SECONDS),
            "options": {"expires": MONITORING_SAMPLE_SECONDS},  # a late sample is worthless; never pile up
        },
        "monitoring-evaluate-alerts": {
            "task": "monitoring.evaluate_alerts",
            "schedule": float(MONITORING_ALERT_SECONDS),
            "options": {"expires": MONITORING_ALERT_SECONDS},
        },
        "monitoring-prune-samples": {"task": "monitoring.prune_samples", "schedule": 3600.0},
    }
)
