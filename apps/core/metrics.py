"""Every Prometheus metric the project exports, in one place.

Processes (daphne, Celery worker and beat, simulator, persister) share them
through prometheus_client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR is set
by `make run` and the test plugin before anything imports prometheus_client.
Gauges say how they combine across processes (livesum: add the live ones).
"""

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)

# --- Market data -------------------------------------------------------------------
TICKS_GENERATED = Counter("trading_ticks_generated_total", "Ticks produced by the simulator or a replay")
RING_EVICTIONS = Counter("trading_ring_evictions_total", "Oldest points evicted from per-symbol rings")
SIMULATOR_BACKPRESSURE = Gauge(
    "trading_simulator_backpressure",
    "1 while the simulator is slowed by the persister backlog",
    multiprocess_mode="max",
)
PERSISTER_BACKLOG = Gauge("trading_persister_backlog", "Stream entries not yet stored", multiprocess_mode="max")
PERSISTER_LAG = Gauge("trading_persister_lag_seconds", "Age of the oldest unstored tick", multiprocess_mode="max")
PERSISTER_WRITES = Counter("trading_persister_writes_total", "Bulk insert operations sent to MongoDB")
PERSISTER_TICKS = Counter("trading_persister_ticks_total", "Ticks stored in MongoDB")
PERSISTER_BATCH = Histogram(
    "trading_persister_batch_size", "Ticks per bulk insert", buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000)
)

# --- WebSocket feed ----------------------------------------------------------------
WS_CONNECTIONS = Gauge("trading_ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
WS_SUBSCRIPTIONS = Gauge("trading_ws_subscriptions", "Symbol subscriptions held", multiprocess_mode="livesum")
WS_FRAMES = Counter("trading_ws_frames_total", "Frames sent to clients")
WS_BYTES = Counter("trading_ws_bytes_total", "Bytes sent to clients")
WS_CONFLATED = Counter("trading_ws_conflated_total", "Updates replaced by a newer one before sending")
WS_ERRORS = Counter("trading_ws_errors_total", "Error frames sent to clients", ["code"])
WS_STALLED_CLOSED = Counter("trading_ws_stalled_closed_total", "Connections closed for taking no frame in time")
WS_BATCH_WINDOW = Gauge("trading_ws_batch_window_seconds", "Current batch window", multiprocess_mode="max")
ACCOUNT_EVENTS = Counter("trading_account_events_total", "Traders' own events published or dropped", ["outcome"])
ACCOUNT_FRAMES = Counter("trading_account_frames_total", "Account frames sent to connections, by kind", ["kind"])

# --- API, cache, database ------------------------------------------------------------
API_LATENCY = Histogram(
    "trading_api_request_seconds",
    "API latency; cache is hit (every cache lookup of the request hit), miss, or none (no lookup)",
    ["endpoint", "method", "status", "cache"],
    buckets=LATENCY_BUCKETS,
)
CACHE_REQUESTS = Counter("trading_cache_requests_total", "Cache lookups", ["namespace", "result"])
CACHE_DEGRADED = Counter("trading_cache_degraded_total", "Cache operations that fell back because Redis failed")
DB_QUERY = Histogram(
    "trading_db_query_seconds",
    "MongoDB command latency",
    ["collection", "operation", "index_used"],
    buckets=LATENCY_BUCKETS,
)
RATE_LIMITED = Counter("trading_rate_limited_total", "Requests refused with 429")
RATE_LIMIT_DEGRADED = Counter(
    "trading_rate_limit_degraded_total", "API requests let through unchecked because the limiter's Redis failed"
)

# --- Trading ---------------------------------------------------------------------------
ORDERS = Counter("trading_orders_total", "Order requests by outcome", ["outcome"])
ENGINE_COMMANDS = Counter("trading_engine_commands_total", "Commands the order engine decided", ["kind"])
ENGINE_BATCH = Histogram(
    "trading_engine_batch_commands",
    "Commands decided per batch (one transaction)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250),
)
ENGINE_COMMIT_SECONDS = Histogram(
    "trading_engine_commit_seconds", "One batch's MongoDB transaction", buckets=LATENCY_BUCKETS
)
ENGINE_BOOK = Gauge("trading_engine_book_orders", "Resting orders in the engine's book", multiprocess_mode="max")
ENGINE_LAG = Gauge(
    "trading_engine_lag_seconds", "Age of the newest command the engine has committed", multiprocess_mode="max"
)
ENGINE_FILLS = Counter("trading_engine_fills_total", "Orders the engine filled")
ADMISSION_REFUSED = Counter(
    "trading_admission_refused_total", "HTTP requests refused with 503 because their server process was at capacity"
)
INVOICES_RENDERED = Counter("trading_invoices_rendered_total", "Invoice PDFs rendered (on first download) and stored")

# --- Jobs ------------------------------------------------------------------------------
TASK_DURATION = Histogram("trading_task_seconds", "Celery task run time", ["task"], buckets=LATENCY_BUCKETS)
TASK_RETRIES = Counter("trading_task_retries_total", "Celery task retries", ["task"])
DEAD_LETTERS = Counter("trading_dead_letters_total", "Jobs moved to the dead-letter store", ["task"])
TASK_FAILURES = Counter("trading_task_failures_total", "Celery task runs that raised", ["task"])
CELERY_QUEUE_LENGTH = Gauge(
    "trading_celery_queue_length", "Messages waiting in a Celery queue", ["queue"], multiprocess_mode="mostrecent"
)
DEAD_LETTERS_PENDING = Gauge(
    "trading_dead_letters_pending", "Dead letters not yet replayed", multiprocess_mode="mostrecent"
)

# --- Database safety -------------------------------------------------------------------
DB_QUERY_FAILURES = Counter(
    "trading_db_query_failures_total", "MongoDB commands that failed (timeouts included)", ["collection", "operation"]
)
INDEXES_MISSING = Gauge(
    "trading_indexes_missing",
    "Declared indexes absent from MongoDB (manage.py check_indexes)",
    multiprocess_mode="mostrecent",
)

# --- Redis and processes -----------------------------------------------------------------
REDIS_MEMORY = Gauge("trading_redis_used_memory_bytes", "Redis used_memory", multiprocess_mode="mostrecent")
REDIS_MAXMEMORY = Gauge(
    "trading_redis_maxmemory_bytes", "Redis maxmemory (0: unbounded)", multiprocess_mode="mostrecent"
)
REDIS_CONNECTIONS = Gauge("trading_redis_connected_clients", "Redis connected_clients", multiprocess_mode="mostrecent")
# One series per live process (prometheus_client adds the pid label); `role` says which kind of process.
MEMORY_SHEDS = Counter(
    "trading_memory_sheds_total", "Times a process shed rebuildable memory at the memory threshold", ["role"]
)
MEMORY_SHED_ITEMS = Counter("trading_memory_shed_items_total", "Items dropped under memory pressure", ["what"])
PROCESS_MEMORY = Gauge(
    "trading_process_resident_memory_bytes", "Resident memory of a process", ["role"], multiprocess_mode="liveall"
)
PROCESS_CPU = Gauge(
    "trading_process_cpu_percent", "CPU use of a process (100 = one core)", ["role"], multiprocess_mode="liveall"
)

# --- Monitoring itself ---------------------------------------------------------------------
ALERTS_OPEN = Gauge("trading_alerts_open", "Open alerts by rule", ["rule"], multiprocess_mode="mostrecent")
ALERTS_FIRED = Counter("trading_alerts_fired_total", "Alerts opened", ["rule"])
ALERT_NOTIFICATIONS = Counter(
    "trading_alert_notifications_total", "Alert notifications by channel and outcome", ["channel", "result"]
)
RECORDER_DEGRADED = Counter(
    "trading_recorder_source_failures_total",
    "Performance recorder sources that failed (basic figures used)",
    ["source"],
)
