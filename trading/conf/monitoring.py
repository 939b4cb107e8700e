"""Monitoring (apps/monitoring): the recorder, alert thresholds and where alerts go; and the logs."""

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from trading.conf.env import env, non_negative_decimal, positive_int
from trading.conf.market import TICK_BACKLOG_LIMIT
from trading.conf.security import DEBUG

# --- Monitoring: recorder, alerts, database safety (apps/monitoring) ------------------
# Every MongoDB command of an HTTP request shares this deadline; pymongo sends the
# remaining time as maxTimeMS (SecantusDB and MongoDB both stop the query there).
MONGODB_REQUEST_TIMEOUT_MS = positive_int("MONGODB_REQUEST_TIMEOUT_MS", 3000)
MONITORING_SAMPLE_SECONDS = positive_int("MONITORING_SAMPLE_SECONDS", 5)
MONITORING_ROLLUP_SECONDS = 300  # the day chart reads one averaged sample per 5 minutes
MONITORING_RETENTION_HOURS = positive_int("MONITORING_RETENTION_HOURS", 48)  # raw samples
MONITORING_ROLLUP_RETENTION_DAYS = positive_int("MONITORING_ROLLUP_RETENTION_DAYS", 30)
MONITORING_ALERT_SECONDS = positive_int("MONITORING_ALERT_SECONDS", 15)
# Default alert thresholds; AlertRule rows are seeded from them once, then edited in admin.
ALERT_THRESHOLDS = {
    "memory_percent": float(non_negative_decimal("ALERT_MEMORY_PERCENT", "85")),
    "api_p95_ms": float(non_negative_decimal("ALERT_API_P95_MS", "200")),
    "db_p95_ms": float(non_negative_decimal("ALERT_DB_P95_MS", "100")),
    "redis_memory_ratio": float(non_negative_decimal("ALERT_REDIS_MEMORY_RATIO", "0.8")),
    "persister_backlog": float(non_negative_decimal("ALERT_PERSISTER_BACKLOG", str(TICK_BACKLOG_LIMIT))),
    "dead_letters": float(non_negative_decimal("ALERT_DEAD_LETTERS", "0")),
    "ws_errors_per_second": float(non_negative_decimal("ALERT_WS_ERRORS_PER_SECOND", "1")),
}
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])  # empty: the e-mail addresses of active staff users
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
if ALERT_WEBHOOK_URL and urlsplit(ALERT_WEBHOOK_URL).scheme not in {"http", "https"}:
    raise ImproperlyConfigured(f"ALERT_WEBHOOK_URL: expected an http(s):// URL, got {ALERT_WEBHOOK_URL!r}")
ALERT_WEBHOOK_TIMEOUT_SECONDS = 2.0
ALERT_WEBHOOK_FAILURES_TO_OPEN = positive_int("ALERT_WEBHOOK_FAILURES_TO_OPEN", 3)
ALERT_WEBHOOK_COOLDOWN_SECONDS = positive_int("ALERT_WEBHOOK_COOLDOWN_SECONDS", 60)
try:  # EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, EMAIL_USE_TLS, ... from one URL
    vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
except ImproperlyConfigured as error:
    raise ImproperlyConfigured(f"EMAIL_URL: {error}; expected e.g. smtp+tls://user:password@host:587") from error
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="trading@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Logging: one JSON object per line in production, readable in development -----
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT: expected 'text' or 'json', got {LOG_FORMAT!r}")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "apps.core.logs.RequestIdFilter"},
        "scrub_secrets": {"()": "apps.core.logs.SecretScrubFilter"},
    },
    "formatters": {
        "json": {"()": "apps.core.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "scrub_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "pymongo": {"level": "WARNING"},
        # The servers log request URLs: their records go through the scrubbing console handler.
        # (Logger filters see only records logged on that logger itself, so each is named.)
        **{
            name: {"handlers": ["console"], "filters": ["scrub_secrets"], "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "daphne", "django.channels.server")
        },
    },
}
