"""Settings, all read from the environment (django-environ; trading/conf/env.py).

A bad value fails at start-up with ImproperlyConfigured naming the variable, never later.
This module holds the project's shape (apps, middleware, templates, static files, the server);
trading/conf/ one module per concern, gathered here:

    security    mode (DJANGO_DEBUG), keys, hosts, HTTPS, logins, API rate limit, CSP, /metrics access
    stores      MongoDB, Redis, the two-layer cache, the channel layer
    market      the market data engine (simulator, tick stream, persister, buckets)
    monitoring  the recorder, alerts and their delivery, logging
    jobs        Celery and the beat schedule
"""

import ipaddress
from pathlib import Path

from trading.conf.env import BASE_DIR, env, non_negative_decimal, positive_int, read
from trading.conf.jobs import *  # noqa: F403
from trading.conf.market import *  # noqa: F403
from trading.conf.monitoring import *  # noqa: F403
from trading.conf.security import *  # noqa: F403
from trading.conf.security import DEBUG
from trading.conf.stores import *  # noqa: F403

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
    "apps.core.middleware.SecurityMiddleware",  # Django's, without a thread hop
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

TRADER_STARTING_CASH = non_negative_decimal("TRADER_STARTING_CASH", "100000.00")

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
PORT = positive_int("PORT", 8000)
# Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (IPs or networks). The Procfile
# passes the same variable to uvicorn's --forwarded-allow-ips, which then sets the client address
# (REMOTE_ADDR: the rate limiter's key for anonymous clients) and the scheme. Empty: no proxy is
# trusted, a forged header is ignored. Behind nginx on the same host: 127.0.0.1.
FORWARDED_ALLOW_IPS = read(
    "FORWARDED_ALLOW_IPS",
    lambda: [str(ipaddress.ip_network(proxy, strict=False)) for proxy in env.list("FORWARDED_ALLOW_IPS", default=[])],
)
# Where the public reaches this site: printed on invoices as the verification link.
PUBLIC_URL = env.str("PUBLIC_URL", default=f"http://127.0.0.1:{PORT}")
HEALTH_TIMEOUT_SECONDS = 1.5
# The live feed closes a WebSocket whose socket took no frame for this long (apps/market/feed/hub.py):
# a client that stopped reading costs its subscriptions only until then.
WS_SEND_STALL_SECONDS = float(non_negative_decimal("WS_SEND_STALL_SECONDS", "10"))
# A trader's own events on the feed (apps/core/account_events.py): how many the history keeps for a
# reconnecting client to resume from, and how long an idle trader's history lives.
ACCOUNT_EVENTS_HISTORY = positive_int("ACCOUNT_EVENTS_HISTORY", 500)
ACCOUNT_EVENTS_TTL_SECONDS = positive_int("ACCOUNT_EVENTS_TTL_SECONDS", 86_400)
HEALTH_CACHE_SECONDS = positive_int("HEALTH_CACHE_SECONDS", 5)  # /healthz reuses its checks this long

# Admission control (apps/core/admission.py): HTTP requests one server process works on at once;
# past it a request is refused at once with 503 + Retry-After. Under overload each admitted request
# waits for the others' CPU, so this bounds the latency of what is admitted (64: admitted reads p95
# 856 ms at twice the sustainable rate, 40: 167 ms, 24: 90 ms; docs/performance.md, "API under load").
ADMISSION_MAX_IN_FLIGHT = positive_int("ADMISSION_MAX_IN_FLIGHT", 24)
# ...besides up to this many requests that only wait on another process (an order awaiting the engine's
# answer: a future on the loop, no thread, no CPU), so a burst of orders is not refused for their number.
ADMISSION_MAX_PARKED = positive_int("ADMISSION_MAX_PARKED", 1000)
# ...and how long a request may wait for a slot while the loop keeps up (a burst; 0: refuse at once).
ADMISSION_MAX_WAIT_MS = float(non_negative_decimal("ADMISSION_MAX_WAIT_MS", "50"))
# ...and the event-loop lag past which it refuses new requests (0 turns the bound off): the hot
# reads run on the loop, so its backlog, not the requests in flight, is what grows under overload.
ADMISSION_MAX_LAG_MS = float(non_negative_decimal("ADMISSION_MAX_LAG_MS", "50"))
# bench/api_load.py only: a bare async django-ninja endpoint at /bench/baseline, the framework's floor.
BENCH_BASELINE_ENDPOINT = read("BENCH_BASELINE_ENDPOINT", lambda: env.bool("BENCH_BASELINE_ENDPOINT", default=False))
