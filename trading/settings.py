"""Settings, all read from the environment (django-environ).

A bad value fails at start-up with ImproperlyConfigured naming the variable,
never later. `var/run.env`, written by `make run` while it runs, fills in
the addresses of the embedded services for commands started by hand.
"""

import ipaddress
import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab
from csp.constants import NONCE
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


# Production by default: `make run` (trading/devstack.py) and the tests set DJANGO_DEBUG=true themselves.
DEBUG = _read("DJANGO_DEBUG", lambda: env.bool("DJANGO_DEBUG", default=False))
TESTING = _read("TESTING", lambda: env.bool("TESTING", default=False))
# DJANGO_DEBUG as the process started (pytest-django switches DEBUG off while tests run; this stays).
DEVELOPMENT = DEBUG
DEVELOPMENT_SECRET_KEY = "development-only-key-never-used-in-production"  # noqa: S105 - refused below outside DEBUG
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY: required when DJANGO_DEBUG is off")
    SECRET_KEY = DEVELOPMENT_SECRET_KEY
# Previous keys, newest first: sessions, password-reset links and invoice codes signed with
# them still verify after a rotation (Django's SECRET_KEY_FALLBACKS; apps/portfolio/invoices.py).
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
if not DEBUG and DEVELOPMENT_SECRET_KEY in [SECRET_KEY, *SECRET_KEY_FALLBACKS]:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY: the committed development key is refused when DJANGO_DEBUG is off")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS (manage.py check --deploy): secure unless DJANGO_DEBUG, each one overridable --------------
_PRODUCTION = not DEBUG
SECURE_SSL_REDIRECT = _read("DJANGO_SECURE_SSL_REDIRECT", lambda: env.bool("DJANGO_SECURE_SSL_REDIRECT", _PRODUCTION))
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = _read(
    "DJANGO_SESSION_COOKIE_SECURE", lambda: env.bool("DJANGO_SESSION_COOKIE_SECURE", _PRODUCTION)
)
CSRF_COOKIE_SECURE = _read("DJANGO_CSRF_COOKIE_SECURE", lambda: env.bool("DJANGO_CSRF_COOKIE_SECURE", _PRODUCTION))
SECURE_HSTS_SECONDS = _read(
    "DJANGO_SECURE_HSTS_SECONDS", lambda: env.int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if _PRODUCTION else 0)
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _read(
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", lambda: env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", _PRODUCTION)
)
# Preloading is a promise to browsers that is slow to take back: opt in explicitly.
SECURE_HSTS_PRELOAD = _read("DJANGO_SECURE_HSTS_PRELOAD", lambda: env.bool("DJANGO_SECURE_HSTS_PRELOAD", False))
# uvicorn sets the scheme from X-Forwarded-Proto of a trusted proxy (FORWARDED_ALLOW_IPS). A server that
# does not (daphne) needs this instead; only behind a proxy that always sets the header.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if _read("DJANGO_SECURE_PROXY_SSL_HEADER", lambda: env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", False))
    else None
)

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
    "trading.apps.MongoAxesConfig",  # django-axes with ObjectId keys (login throttling)
    "csp",
    "apps.core",
    "apps.market",
    "apps.portfolio",
    "apps.leaderboard",
    "apps.analytics",
    "apps.dashboard",  # the page composition: imports every app, imported by none
    "apps.monitoring",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "apps.monitoring.middleware.RequestMetricsMiddleware",  # API latency metrics, per-request MongoDB deadline
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.core.ratelimit.ApiRateLimitMiddleware",  # Property 12: per trader (or IP) per minute, in Redis
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into its 429 page
    "apps.monitoring.middleware.BoundedPrometheusAfterMiddleware",  # method label from a fixed set
]

# Bearer-token /api/ requests (integrators, the load they bring) skip what only a browser needs:
# sessions, CSRF, messages, static files, a second metrics layer (trading/handlers.py).
API_MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "apps.monitoring.middleware.RequestMetricsMiddleware",
    "apps.core.middleware.AllowedHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "apps.core.ratelimit.ApiRateLimitMiddleware",
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
# Market data (tick buckets) lives on its own alias, routed by trading.db_router, so tick
# writes never queue trading reads behind them in one database process (ADR 0005).
# `make run`/`make test` start a second embedded SecantusDB and set MONGODB_TICKS_URI;
# in production set it to the market-data cluster, or leave it unset to keep market
# data in its own database (MONGODB_TICKS_NAME) on the MONGODB_URI cluster.
MONGODB_TICKS_URI = env.str("MONGODB_TICKS_URI", default=MONGODB_URI)
MONGODB_TICKS_NAME = env.str("MONGODB_TICKS_NAME", default=f"{MONGODB_NAME}_market")
if MONGODB_TICKS_URI == MONGODB_URI and MONGODB_TICKS_NAME == MONGODB_NAME:
    raise ImproperlyConfigured("MONGODB_TICKS_NAME: must differ from MONGODB_NAME when both use one cluster")
DATABASES["market"] = {
    **DATABASES["default"],
    "HOST": MONGODB_TICKS_URI,
    "NAME": MONGODB_TICKS_NAME,
    "OPTIONS": {**DATABASES["default"]["OPTIONS"], "maxPoolSize": _positive_int("MONGODB_TICKS_MAX_POOL_SIZE", 10)},
}
DATABASE_ROUTERS = ["trading.db_router.MarketDataRouter"]
DEFAULT_AUTO_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"
MIGRATION_MODULES = {
    "admin": "trading.mongo_migrations.admin",
    "auth": "trading.mongo_migrations.auth",
    "contenttypes": "trading.mongo_migrations.contenttypes",
    "axes": "trading.mongo_migrations.axes",
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
            # Never pickle: a value read from Redis must not be able to run code (apps/core/codec.py
            # for the two-layer cache; here: rate-limit counters, token owners, login failures).
            "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
            "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
            "CONNECTION_POOL_KWARGS": {"max_connections": REDIS_POOL_MAX, "timeout": 2},
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
        },
    },
}

# --- Two-layer cache (apps/core/cache.py) ----------------------------------------------
# Property 26: one TTL per data type, overridable as CACHE_TTL_<NAME> (seconds).
# "tokens": an API token's context (its user); also how often last_used_at is written. A revoke or a
# change of the user invalidates it at once, so the TTL is only the load it spares: at 60 s an active
# trader's token went back to MongoDB (three commands) every minute (bench/api_load.py, issue 11).
_DEFAULT_CACHE_TTLS = {
    "leaderboards": 300,
    "profiles": 1800,
    "prices": 60,
    "analytics": 900,
    "symbols": 300,
    "tokens": 900,
}
CACHE_TTLS = {name: _positive_int(f"CACHE_TTL_{name.upper()}", ttl) for name, ttl in _DEFAULT_CACHE_TTLS.items()}
# Each active trader's token context is an entry: 512 thrashed under 800 traders (bench/api_load.py).
CACHE_L1_MAX_ENTRIES = _positive_int("CACHE_L1_MAX_ENTRIES", 4096)
CACHE_L1_MAX_TTL = _positive_int("CACHE_L1_MAX_TTL", 30)  # seconds; an L1 entry never outlives its L2 entry
CACHE_CIRCUIT_SECONDS = _positive_int("CACHE_CIRCUIT_SECONDS", 5)  # skip a failed Redis this long
# A query timeout serves the last cached value (marked stale) when it is at most this much past its TTL.
CACHE_STALE_SECONDS = _positive_int("CACHE_STALE_SECONDS", 600)
CACHE_ENABLED = _read("CACHE_ENABLED", lambda: env.bool("CACHE_ENABLED", default=True))  # off: every read loads

CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        # Property 8: redis-py's async pool would otherwise allow 100 connections.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "max_connections": REDIS_POOL_MAX}],
            "prefix": f"{REDIS_KEY_PREFIX}:channels",
        },
    },
}

# --- Market data engine (simulator -> Redis stream -> persister -> MongoDB) ------------
MARKET_TICK_RATE = _positive_int("MARKET_TICK_RATE", 500)  # ticks per second over all symbols
TICK_STREAM = env.str("TICK_STREAM", default="ticks")  # Redis stream name (under REDIS_KEY_PREFIX)
# Property 9: past this many unstored ticks in the stream the simulator slows down.
TICK_BACKLOG_LIMIT = _positive_int("TICK_BACKLOG_LIMIT", 50_000)
# Property 7: bulk inserts per second, however high the tick rate.
PERSISTER_WRITES_PER_SECOND = _positive_int("PERSISTER_WRITES_PER_SECOND", 10)
if PERSISTER_WRITES_PER_SECOND > 10:
    raise ImproperlyConfigured(
        f"PERSISTER_WRITES_PER_SECOND: at most 10 (Property 7), got {PERSISTER_WRITES_PER_SECOND}"
    )
PERSISTER_BATCH_MAX = _positive_int("PERSISTER_BATCH_MAX", 5_000)  # ticks per bulk insert
PRICE_RING_SIZE = _positive_int("PRICE_RING_SIZE", 1000)  # Property 21: recent points kept per symbol
# Stored ticks: one document per symbol per time bucket (ADR 0005). A bucket closes at the end of its
# window, at TICK_BUCKET_MAX_POINTS, or when the persister holds half the backlog limit.
TICK_BUCKET_SECONDS = _positive_int("TICK_BUCKET_SECONDS", 30)
if TICK_BUCKET_SECONDS > 60:
    raise ImproperlyConfigured(
        f"TICK_BUCKET_SECONDS: at most 60 (history windows start at a minute), got {TICK_BUCKET_SECONDS}"
    )
TICK_BUCKET_MAX_POINTS = _positive_int("TICK_BUCKET_MAX_POINTS", 200)
if TICK_BUCKET_MAX_POINTS * 2 > PRICE_RING_SIZE:
    raise ImproperlyConfigured(
        "TICK_BUCKET_MAX_POINTS: at most half of PRICE_RING_SIZE (the ring must cover a bucket still open), "
        f"got {TICK_BUCKET_MAX_POINTS}"
    )
# Seconds between stream reads: the persister wakes once per poll, not once per simulator batch.
PERSISTER_POLL_SECONDS = float(_decimal("PERSISTER_POLL_SECONDS", "1"))

# --- Resting orders and the matcher (apps/portfolio/orders.py, matching.py) ---------------------------
# A day order rests this long at most (the simulated session never closes: 6.5 h, one exchange session).
ORDER_DAY_SECONDS = _positive_int("ORDER_DAY_SECONDS", 23_400)
MATCHER_BATCH_MAX = _positive_int("MATCHER_BATCH_MAX", 1000)  # ticks per stream read
MATCHER_EXPIRY_SECONDS = _positive_int("MATCHER_EXPIRY_SECONDS", 5)  # between sweeps for ended day orders
# Between full reloads of the book from MongoDB: repairs a book change lost to a Redis outage.
MATCHER_RESYNC_SECONDS = _positive_int("MATCHER_RESYNC_SECONDS", 300)

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_POOL_LIMIT = REDIS_POOL_MAX
# A message a worker took and never acknowledged (the worker was killed) is delivered again after this.
# A few times the longest job, and longer than the longest retry delay (apps/core/jobs.py: 300 s), since
# the Redis transport also redelivers a retry still waiting for its countdown. Invoices do not wait for
# it: their outbox sweeper resends a stalled one after INVOICE_RESEND_AFTER_SECONDS.
CELERY_VISIBILITY_TIMEOUT = _positive_int("CELERY_VISIBILITY_TIMEOUT", 600)
if CELERY_VISIBILITY_TIMEOUT <= 330:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT: must exceed the longest retry delay (300 s), got {CELERY_VISIBILITY_TIMEOUT}"
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:",
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
}
# Property 35 against a refused enqueue or a killed worker: an invoice pending this long without a
# live job is sent again (once per period), checked every INVOICE_SWEEP_SECONDS; a running invoice job
# holds a lease of INVOICE_JOB_LEASE_SECONDS (longer than a render takes).
INVOICE_RESEND_AFTER_SECONDS = _positive_int("INVOICE_RESEND_AFTER_SECONDS", 60)
INVOICE_SWEEP_SECONDS = _positive_int("INVOICE_SWEEP_SECONDS", 20)
INVOICE_JOB_LEASE_SECONDS = _positive_int("INVOICE_JOB_LEASE_SECONDS", 30)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "invoice-outbox-sweep": {
        "task": "portfolio.sweep_invoices",
        "schedule": float(INVOICE_SWEEP_SECONDS),
        "options": {"expires": INVOICE_SWEEP_SECONDS},
    },
}
CELERY_TIMEZONE = "UTC"

# --- Precomputed reads, cache warm-up, price-history retention (issue 6) -----------------
PRICE_HISTORY_RETENTION_DAYS = _positive_int("PRICE_HISTORY_RETENTION_DAYS", 7)
PRECOMPUTE_SECONDS = _positive_int("PRECOMPUTE_SECONDS", 60)  # Property 11: at least every minute
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

# --- Auth ------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "apps.core.auth_backends.LoginThrottleBackend",  # django-axes: refuses a locked-out client first
    "django.contrib.auth.backends.ModelBackend",
]
# Failed logins (/login/ and /admin/login/) are counted per (username, client IP) in Redis: the
# cache handler needs no model, so no migration on MongoDB and no write to the database per failure
# (docs/decisions/0007). The client IP is REMOTE_ADDR, which uvicorn sets from a trusted proxy only.
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_CACHE = "default"
AXES_FAILURE_LIMIT = _positive_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=_positive_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ADMIN = False  # the cache handler keeps no AccessAttempt rows to show
AXES_VERBOSE = False
TRADER_STARTING_CASH = _decimal("TRADER_STARTING_CASH", "100000.00")

# --- API rate limit (Property 12): "<count>/<period>", period s, m, h or d ----------
# Tests default to a limit no test reaches; tests of the limiter set the real one.
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="100000/m" if TESTING else "100/m")
if not re.fullmatch(r"[1-9][0-9]*/[smhd]", API_RATE_LIMIT):
    raise ImproperlyConfigured(f"API_RATE_LIMIT: expected '<count>/<s|m|h|d>' such as '100/m', got {API_RATE_LIMIT!r}")
RATELIMIT_USE_CACHE = "default"

# --- Content-Security-Policy (django-csp 4: one dict per policy) -------------------------------------
# Everything the pages load is ours, served from 'self' (the esbuild bundle with lightweight-charts,
# the CSS, Swagger UI's local copy); the two small inline blocks (the theme switch before first paint,
# the ops page's styles) carry the per-response nonce. JSON for the first screen is embedded with
# json_script, which CSP treats as data, not script. connect-src 'self' covers the same-origin feed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        # The hash: lightweight-charts 5.2.1 inserts one <style> for its attribution logo (the library's
        # licence asks for the attribution); a new chart version with other CSS fails tests/browser/test_csp.py.
        "style-src": ["'self'", NONCE, "'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- I18N / static ---------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))
# WhiteNoise serves static files under any ASGI server: from the source folders in development,
# from STATIC_ROOT (`manage.py collectstatic`) in production.
WHITENOISE_USE_FINDERS = DEBUG

# --- Server ----------------------------------------------------------------------
PORT = _positive_int("PORT", 8000)
# Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (IPs or networks). The Procfile
# passes the same variable to uvicorn's --forwarded-allow-ips, which then sets the client address
# (REMOTE_ADDR: the rate limiter's key for anonymous clients) and the scheme. Empty: no proxy is
# trusted, a forged header is ignored. Behind nginx on the same host: 127.0.0.1.
FORWARDED_ALLOW_IPS = _read(
    "FORWARDED_ALLOW_IPS",
    lambda: [str(ipaddress.ip_network(proxy, strict=False)) for proxy in env.list("FORWARDED_ALLOW_IPS", default=[])],
)
# Where the public reaches this site: printed on invoices as the verification link.
PUBLIC_URL = env.str("PUBLIC_URL", default=f"http://127.0.0.1:{PORT}")
HEALTH_TIMEOUT_SECONDS = 1.5
# The live feed closes a WebSocket whose socket took no frame for this long (apps/market/feed/hub.py):
# a client that stopped reading costs its subscriptions only until then.
WS_SEND_STALL_SECONDS = float(_decimal("WS_SEND_STALL_SECONDS", "10"))
HEALTH_CACHE_SECONDS = _positive_int("HEALTH_CACHE_SECONDS", 5)  # /healthz reuses its checks this long

# --- Monitoring access -----------------------------------------------------------
# /metrics answers only `Authorization: Bearer $METRICS_TOKEN` (Prometheus'
# `authorization: {credentials: ...}`). Without a token it is open in development
# and closed (401) in production.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_OPEN_WITHOUT_TOKEN = DEVELOPMENT

# Admission control (apps/core/admission.py): HTTP requests one server process serves at once;
# past it a request is refused at once with 503 + Retry-After. Sized so that a full process still
# answers within the API's latency target (measured: docs/performance.md, "API under load").
ADMISSION_MAX_IN_FLIGHT = _positive_int("ADMISSION_MAX_IN_FLIGHT", 24)
# ...and the event-loop lag past which it refuses new requests (0 turns the bound off): the hot
# reads run on the loop, so its backlog, not the requests in flight, is what grows under overload.
ADMISSION_MAX_LAG_MS = float(_decimal("ADMISSION_MAX_LAG_MS", "50"))
# bench/api_load.py only: a bare async django-ninja endpoint at /bench/baseline, the framework's floor.
BENCH_BASELINE_ENDPOINT = _read("BENCH_BASELINE_ENDPOINT", lambda: env.bool("BENCH_BASELINE_ENDPOINT", default=False))

# --- Monitoring: recorder, alerts, database safety (apps/monitoring) ------------------
# Every MongoDB command of an HTTP request shares this deadline; pymongo sends the
# remaining time as maxTimeMS (SecantusDB and MongoDB both stop the query there).
MONGODB_REQUEST_TIMEOUT_MS = _positive_int("MONGODB_REQUEST_TIMEOUT_MS", 3000)
MONITORING_SAMPLE_SECONDS = _positive_int("MONITORING_SAMPLE_SECONDS", 5)
MONITORING_ROLLUP_SECONDS = 300  # the day chart reads one averaged sample per 5 minutes
MONITORING_RETENTION_HOURS = _positive_int("MONITORING_RETENTION_HOURS", 48)  # raw samples
MONITORING_ROLLUP_RETENTION_DAYS = _positive_int("MONITORING_ROLLUP_RETENTION_DAYS", 30)
MONITORING_ALERT_SECONDS = _positive_int("MONITORING_ALERT_SECONDS", 15)
# Default alert thresholds; AlertRule rows are seeded from them once, then edited in admin.
ALERT_THRESHOLDS = {
    "memory_percent": float(_decimal("ALERT_MEMORY_PERCENT", "85")),
    "api_p95_ms": float(_decimal("ALERT_API_P95_MS", "200")),
    "db_p95_ms": float(_decimal("ALERT_DB_P95_MS", "100")),
    "redis_memory_ratio": float(_decimal("ALERT_REDIS_MEMORY_RATIO", "0.8")),
    "persister_backlog": float(_decimal("ALERT_PERSISTER_BACKLOG", str(TICK_BACKLOG_LIMIT))),
    "dead_letters": float(_decimal("ALERT_DEAD_LETTERS", "0")),
    "ws_errors_per_second": float(_decimal("ALERT_WS_ERRORS_PER_SECOND", "1")),
}
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])  # empty: the e-mail addresses of active staff users
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
if ALERT_WEBHOOK_URL and urlsplit(ALERT_WEBHOOK_URL).scheme not in {"http", "https"}:
    raise ImproperlyConfigured(f"ALERT_WEBHOOK_URL: expected an http(s):// URL, got {ALERT_WEBHOOK_URL!r}")
ALERT_WEBHOOK_TIMEOUT_SECONDS = 2.0
ALERT_WEBHOOK_FAILURES_TO_OPEN = _positive_int("ALERT_WEBHOOK_FAILURES_TO_OPEN", 3)
ALERT_WEBHOOK_COOLDOWN_SECONDS = _positive_int("ALERT_WEBHOOK_COOLDOWN_SECONDS", 60)
try:  # EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, EMAIL_USE_TLS, ... from one URL
    vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
except ImproperlyConfigured as error:
    raise ImproperlyConfigured(f"EMAIL_URL: {error}; expected e.g. smtp+tls://user:password@host:587") from error
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="trading@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
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
