"""Who may do what: development or production mode, keys, hosts, HTTPS, logins, the API rate limit,
the Content-Security-Policy and access to /metrics.
"""

import re
from datetime import timedelta

from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

from trading.conf.env import env, positive_int, read

# Production by default: `make run` (trading/devstack.py) and the tests set DJANGO_DEBUG=true themselves.
DEBUG = read("DJANGO_DEBUG", lambda: env.bool("DJANGO_DEBUG", default=False))
TESTING = read("TESTING", lambda: env.bool("TESTING", default=False))
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
SECURE_SSL_REDIRECT = read("DJANGO_SECURE_SSL_REDIRECT", lambda: env.bool("DJANGO_SECURE_SSL_REDIRECT", _PRODUCTION))
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = read(
    "DJANGO_SESSION_COOKIE_SECURE", lambda: env.bool("DJANGO_SESSION_COOKIE_SECURE", _PRODUCTION)
)
CSRF_COOKIE_SECURE = read("DJANGO_CSRF_COOKIE_SECURE", lambda: env.bool("DJANGO_CSRF_COOKIE_SECURE", _PRODUCTION))
SECURE_HSTS_SECONDS = read(
    "DJANGO_SECURE_HSTS_SECONDS", lambda: env.int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if _PRODUCTION else 0)
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = read(
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", lambda: env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", _PRODUCTION)
)
# Preloading is a promise to browsers that is slow to take back: opt in explicitly.
SECURE_HSTS_PRELOAD = read("DJANGO_SECURE_HSTS_PRELOAD", lambda: env.bool("DJANGO_SECURE_HSTS_PRELOAD", False))
# uvicorn sets the scheme from X-Forwarded-Proto of a trusted proxy (FORWARDED_ALLOW_IPS). A server that
# does not (daphne) needs this instead; only behind a proxy that always sets the header.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if read("DJANGO_SECURE_PROXY_SSL_HEADER", lambda: env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", False))
    else None
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
AXES_FAILURE_LIMIT = positive_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=positive_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ADMIN = False  # the cache handler keeps no AccessAttempt rows to show
AXES_VERBOSE = False

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

# --- Monitoring access -----------------------------------------------------------
# /metrics answers only `Authorization: Bearer $METRICS_TOKEN` (Prometheus'
# `authorization: {credentials: ...}`). Without a token it is open in development
# and closed (401) in production.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_OPEN_WITHOUT_TOKEN = DEVELOPMENT
