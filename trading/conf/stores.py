"""Where data lives: MongoDB (trading and market-data aliases), Redis (pools, the cache, the channel layer)
and the two-layer cache's TTLs and bounds (apps/core/cache).
"""

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from trading.conf.env import env, positive_int, read, redis_url

# --- MongoDB -------------------------------------------------------------------
# The URI goes in HOST (parse_uri() is deprecated). `make run`/`make test` start
# an embedded SecantusDB and set MONGODB_URI when none is given.
MONGODB_URI = env.str("MONGODB_URI", default="mongodb://127.0.0.1:27017/?directConnection=true")
MONGODB_NAME = env.str("MONGODB_NAME", default="trading")
MONGODB_TIMEOUT_MS = positive_int("MONGODB_TIMEOUT_MS", 2000)
DATABASES = {
    "default": {
        "ENGINE": "django_mongodb_backend",
        "HOST": MONGODB_URI,
        "NAME": MONGODB_NAME,
        "OPTIONS": {
            "serverSelectionTimeoutMS": MONGODB_TIMEOUT_MS,
            "connectTimeoutMS": MONGODB_TIMEOUT_MS,
            "maxPoolSize": positive_int("MONGODB_MAX_POOL_SIZE", 50),
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
    "OPTIONS": {**DATABASES["default"]["OPTIONS"], "maxPoolSize": positive_int("MONGODB_TICKS_MAX_POOL_SIZE", 10)},
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
REDIS_URL = redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")
# Property 8: every Redis pool the project creates holds 5 to 20 connections.
REDIS_POOL_MIN = 5
REDIS_POOL_MAX = read("REDIS_POOL_MAX", lambda: env.int("REDIS_POOL_MAX", default=20))
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

# --- Two-layer cache (apps/core/cache/) ------------------------------------------------
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
CACHE_TTLS = {name: positive_int(f"CACHE_TTL_{name.upper()}", ttl) for name, ttl in _DEFAULT_CACHE_TTLS.items()}
# Each active trader's token context is an entry: 512 thrashed under 800 traders (bench/api_load.py).
CACHE_L1_MAX_ENTRIES = positive_int("CACHE_L1_MAX_ENTRIES", 4096)
CACHE_L1_MAX_TTL = positive_int("CACHE_L1_MAX_TTL", 30)  # seconds; an L1 entry never outlives its L2 entry
CACHE_CIRCUIT_SECONDS = positive_int("CACHE_CIRCUIT_SECONDS", 5)  # skip a failed Redis this long
# A query timeout serves the last cached value (marked stale) when it is at most this much past its TTL.
CACHE_STALE_SECONDS = positive_int("CACHE_STALE_SECONDS", 600)
CACHE_ENABLED = read("CACHE_ENABLED", lambda: env.bool("CACHE_ENABLED", default=True))  # off: every read loads

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
