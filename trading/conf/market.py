"""The market data engine: simulator -> Redis stream -> persister -> MongoDB tick buckets."""

from django.core.exceptions import ImproperlyConfigured

from trading.conf.env import env, non_negative_decimal, positive_int

# --- Market data engine (simulator -> Redis stream -> persister -> MongoDB) ------------
MARKET_TICK_RATE = positive_int("MARKET_TICK_RATE", 500)  # ticks per second over all symbols
TICK_STREAM = env.str("TICK_STREAM", default="ticks")  # Redis stream name (under REDIS_KEY_PREFIX)
# Property 9: past this many unstored ticks in the stream the simulator slows down.
TICK_BACKLOG_LIMIT = positive_int("TICK_BACKLOG_LIMIT", 50_000)
# Property 7: bulk inserts per second, however high the tick rate.
PERSISTER_WRITES_PER_SECOND = positive_int("PERSISTER_WRITES_PER_SECOND", 10)
if PERSISTER_WRITES_PER_SECOND > 10:
    raise ImproperlyConfigured(
        f"PERSISTER_WRITES_PER_SECOND: at most 10 (Property 7), got {PERSISTER_WRITES_PER_SECOND}"
    )
PERSISTER_BATCH_MAX = positive_int("PERSISTER_BATCH_MAX", 5_000)  # ticks per bulk insert
PRICE_RING_SIZE = positive_int("PRICE_RING_SIZE", 1000)  # Property 21: recent points kept per symbol
# Stored ticks: one document per symbol per time bucket (ADR 0005). A bucket closes at the end of its
# window, at TICK_BUCKET_MAX_POINTS, or when the persister holds half the backlog limit.
TICK_BUCKET_SECONDS = positive_int("TICK_BUCKET_SECONDS", 30)
if TICK_BUCKET_SECONDS > 60:
    raise ImproperlyConfigured(
        f"TICK_BUCKET_SECONDS: at most 60 (history windows start at a minute), got {TICK_BUCKET_SECONDS}"
    )
TICK_BUCKET_MAX_POINTS = positive_int("TICK_BUCKET_MAX_POINTS", 200)
if TICK_BUCKET_MAX_POINTS * 2 > PRICE_RING_SIZE:
    raise ImproperlyConfigured(
        "TICK_BUCKET_MAX_POINTS: at most half of PRICE_RING_SIZE (the ring must cover a bucket still open), "
        f"got {TICK_BUCKET_MAX_POINTS}"
    )
# Seconds between stream reads: the persister wakes once per poll, not once per simulator batch.
PERSISTER_POLL_SECONDS = float(non_negative_decimal("PERSISTER_POLL_SECONDS", "1"))

# --- The order engine (apps/portfolio/engine/, ADR 0008) -------------------------------------------------
# A day order rests this long at most (the simulated session never closes: 6.5 h, one exchange session).
ORDER_DAY_SECONDS = positive_int("ORDER_DAY_SECONDS", 23_400)
# Accounts are spread over this many engines (`manage.py run_engine --shard K`, K from 0): hash(account) % N.
ENGINE_SHARDS = positive_int("ENGINE_SHARDS", 1)
if ENGINE_SHARDS > 64:
    raise ImproperlyConfigured(f"ENGINE_SHARDS: at most 64, got {ENGINE_SHARDS}")
# One batch (one transaction) holds at most this many commands, gathered for at most this many milliseconds
# after its first: under load batches fill by themselves while the previous one commits (group commit).
# No window by default: on the embedded database a write costs about 1 ms of its CPU a document whatever the
# batch, so waiting buys little (5 ms: 10 % less database CPU) and costs every order its wait (100 orders/s:
# p50 29-40 ms with 5 ms, 17-22 ms with none; ADR 0008).
ENGINE_BATCH_MAX = positive_int("ENGINE_BATCH_MAX", 500)
ENGINE_BATCH_WINDOW_MS = float(non_negative_decimal("ENGINE_BATCH_WINDOW_MS", "0"))
# How long the web waits for the engine's answer before it answers 503 + Retry-After (a retry with the same
# client_order_id returns the original outcome).
ENGINE_REPLY_TIMEOUT_SECONDS = float(non_negative_decimal("ENGINE_REPLY_TIMEOUT_SECONDS", "5"))
