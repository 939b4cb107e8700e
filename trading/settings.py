"""Settings, all read from the environment (django-environ).

A bad value fails at start-up with ImproperlyConfigured naming the variable,
never later. `var/run.env`, written by `make run` while it runs, fills in
the addresses of the embedded services for commands started by hand.
"""

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / "var" / "run.env")  # never overrides the real environment

T = TypeVar("T")


def _read(name: str, parse: Callable[[], T]) -> T:
    """Parse one variable; a bad value names the variable at start-up."""
    try:
        return parse()
    except (ValueError, TypeError, InvalidOperation) as error:
        raise ImproperlyConfigured(f"{name}: bad value {env.str(name, default='')!r} ({error})") from error


def _decimal(name: str, default: str) -> Decimal:
    value = _read(name, lambda: Decimal(env.str(name, default=default)))
    if not value.is_finite() or value < 0:
        raise ImproperlyConfigured(f"{name}: must be a non-negative number, got {value}")
    return value


def _positive_int(name: str, default: int) -> int:
    value = _read(name, lambda: env.int(name, default=default))
    if value <= 0:
        raise ImproperlyConfigured(f"{name}: must be a positive integer, got {value}")
    return value


def _redis_url(name: str, default: str) -> str:
    value = env.str(name, default=default)
    if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"{name}: expected a redis:// URL, got {value!r}")
    return value


DEBUG = _read("DJANGO_DEBUG", lambda: env.bool("DJANGO_DEBUG", default=True))
TESTING = _read("TESTING", lambda: env.bool("TESTING", default=False))
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY: required when DJANGO_DEBUG is off")
    SECRET_KEY = "development-only-key-never-used-in-production"  # noqa: S105
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "trading.apps.MongoAdminConfig",
    "trading.apps.MongoAuthConfig",
    "trading.apps.MongoContentTypesConfig",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "channels",
    "ninja",
    "apps.core",
    "apps.market",
    "apps.portfolio",
    "apps.leaderboard",
    "apps.analytics",
    "apps.monitoring",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "trading.urls"
ASGI_APPLICATION = "trading.asgi.application"
WSGI_APPLICATION = "trading.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- MongoDB -------------------------------------------------------------------
# The URI goes in HOST (parse_uri() is deprecated). `make run`/`make test` start
# an embedded SecantusDB and set MONGODB_URI when none is given.
MONGODB_URI = env.str("MONGODB_URI", default="mongodb://127.0.0.1:27017/?directConnection=true")
MONGODB_NAME = env.str("MONGODB_NAME", default="trading")
MONGODB_TIMEOUT_MS = _positive_int("MONGODB_TIMEOUT_MS", 2000)
DATABASES = {
    "default": {
        "ENGINE": "django_mongodb_backend",
        "HOST": MONGODB_URI,
        "NAME": MONGODB_NAME,
        "OPTIONS": {
            "serverSelectionTimeoutMS": MONGODB_TIMEOUT_MS,
            "connectTimeoutMS": MONGODB_TIMEOUT_MS,
            "maxPoolSize": _positive_int("MONGODB_MAX_POOL_SIZE", 50),
        },
    },
}
DEFAULT_AUTO_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"
MIGRATION_MODULES = {
    "admin": "trading.mongo_migrations.admin",
    "auth": "trading.mongo_migrations.auth",
    "contenttypes": "trading.mongo_migrations.contenttypes",
}

# --- Redis: cache, channel layer, Celery broker ------------------------------
REDIS_URL = _redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")
# Property 8: every Redis pool the project creates holds 5 to 20 connections.
REDIS_POOL_MIN = 5
REDIS_POOL_MAX = _read("REDIS_POOL_MAX", lambda: env.int("REDIS_POOL_MAX", default=20))
if not REDIS_POOL_MIN <= REDIS_POOL_MAX <= 20:
    raise ImproperlyConfigured(f"REDIS_POOL_MAX: must be between 5 and 20, got {REDIS_POOL_MAX}")
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="trading")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
            "CONNECTION_POOL_KWARGS": {"max_connections": REDIS_POOL_MAX, "timeout": 2},
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
        },
    },
}

CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_KEY_PREFIX}:channels"},
    },
}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_POOL_LIMIT = REDIS_POOL_MAX
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:",
    "visibility_timeout": 3600,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {}
CELERY_TIMEZONE = "UTC"

# --- Auth ------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 4}},
]
TRADER_STARTING_CASH = _decimal("TRADER_STARTING_CASH", "100000.00")

# --- I18N / static ---------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Server ----------------------------------------------------------------------
PORT = _positive_int("PORT", 8000)
HEALTH_TIMEOUT_SECONDS = 1.5

# --- Logging: one JSON object per line in production, readable in development -----
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT: expected 'text' or 'json', got {LOG_FORMAT!r}")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.logs.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "apps.core.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "pymongo": {"level": "WARNING"},
    },
}
