"""Process-wide instrumentation, installed once per process by MonitoringConfig.ready().

- `QueryMetricsListener`: a pymongo CommandListener timing every data command
  by collection and operation. Its `index_used` label is a *prediction* made
  from the filter, not the planner's choice: "yes" when a top-level filter
  field leads an index the models declare (or is `_id`), "no" when none does
  (including an empty filter: a scan), "n/a" for inserts and cursor
  continuations. `manage.py check_indexes` says whether those indexes exist.
- Celery signals: task duration, retries and failures.
- `ProcessSampler`: a daemon thread setting this process' memory and CPU gauges
  every few seconds (one series per pid, labelled with the process role).
- Multiprocess bookkeeping: a process marks itself dead on exit, and a scrape
  of /metrics marks dead any process whose live-gauge files outlived it
  (killed with -9).
"""

from __future__ import annotations

import atexit
import glob
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
from django.conf import settings
from prometheus_client import multiprocess
from pymongo import monitoring

from apps.core.metrics import DB_QUERY, DB_QUERY_FAILURES, PROCESS_CPU, PROCESS_MEMORY
from apps.core.pressure import MemoryPressureWatch

logger = logging.getLogger(__name__)

DATA_COMMANDS = frozenset(
    {"find", "aggregate", "insert", "update", "delete", "findAndModify", "count", "distinct", "getMore"}
)
NO_FILTER_COMMANDS = frozenset({"insert", "getMore"})
MAX_IN_FLIGHT = 10_000  # commands whose end we never saw must not grow the table forever
SAMPLE_SECONDS = 5.0
# manage.py commands that run as processes of the Procfile (any other `run_*` command counts too).
LONG_RUNNING_COMMANDS = {"runserver": "web", "run_market": "market", "persist_ticks": "persister"}
LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


# --- MongoDB ----------------------------------------------------------------------------
def _filter_of(operation: str, command: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The query filter of a command (None: the command scans without one)."""
    if operation == "find":
        return command.get("filter") or None
    if operation == "aggregate":
        pipeline: Sequence[Mapping[str, Any]] = command.get("pipeline") or []
        return pipeline[0].get("$match") if pipeline and "$match" in pipeline[0] else None
    if operation in {"update", "delete"}:
        statements = command.get("updates" if operation == "update" else "deletes") or [{}]
        return statements[0].get("q") or None
    return command.get("query") or None  # findAndModify, count, distinct


def _filter_fields(query: Mapping[str, Any]) -> set[str]:
    """Top-level fields a filter constrains, looking through $and and simple $expr comparisons."""
    fields: set[str] = set()
    for name, value in query.items():
        if name == "$and" and isinstance(value, list):
            for part in value:
                if isinstance(part, Mapping):
                    fields |= _filter_fields(part)
        elif name == "$expr" and isinstance(value, Mapping):
            fields |= _expr_fields(value)
        elif not name.startswith("$"):
            fields.add(name.split(".")[0])
    return fields


def _expr_fields(expression: Mapping[str, Any]) -> set[str]:
    fields: set[str] = set()
    for operator, operands in expression.items():
        if operator == "$and" and isinstance(operands, list):
            for part in operands:
                if isinstance(part, Mapping):
                    fields |= _expr_fields(part)
        elif operator in {"$eq", "$in", "$gt", "$gte", "$lt", "$lte"} and isinstance(operands, list) and operands:
            first = operands[0]
            if isinstance(first, str) and first.startswith("$") and not first.startswith("$$"):
                fields.add(first[1:].split(".")[0])
    return fields


def index_label(
    collection: str, operation: str, command: Mapping[str, Any], leading: Mapping[str, frozenset[str]]
) -> str:
    if operation in NO_FILTER_COMMANDS:
        return "n/a"
    query = _filter_of(operation, command)
    if not query:
        return "no"
    indexed = leading.get(collection, frozenset({"_id"}))
    return "yes" if _filter_fields(query) & indexed else "no"


class QueryMetricsListener(monitoring.CommandListener):
    """Times data commands into DB_QUERY; failures (timeouts included) also count in DB_QUERY_FAILURES."""

    def __init__(self) -> None:
        self._in_flight: dict[tuple[Any, int], tuple[str, str, str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        operation = event.command_name
        if operation not in DATA_COMMANDS:
            return
        collection = event.command.get("collection" if operation == "getMore" else operation)
        if not isinstance(collection, str):
            return
        from apps.monitoring.indexes import indexed_leading_fields

        if len(self._in_flight) >= MAX_IN_FLIGHT:
            self._in_flight.clear()
        label = index_label(collection, operation, event.command, indexed_leading_fields())
        self._in_flight[(event.connection_id, event.request_id)] = (collection, operation, label)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        known = self._in_flight.pop((event.connection_id, event.request_id), None)
        if known is not None:
            collection, operation, label = known
            DB_QUERY.labels(collection=collection, operation=operation, index_used=label).observe(
                event.duration_micros / 1_000_000
            )

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        known = self._in_flight.pop((event.connection_id, event.request_id), None)
        if known is not None:
            collection, operation, label = known
            DB_QUERY.labels(collection=collection, operation=operation, index_used=label).observe(
                event.duration_micros / 1_000_000
            )
            DB_QUERY_FAILURES.labels(collection=collection, operation=operation).inc()


# --- Celery -----------------------------------------------------------------------------
def connect_celery_signals() -> None:
    from celery import signals

    from apps.core.metrics import TASK_DURATION, TASK_FAILURES, TASK_RETRIES

    started: dict[str, float] = {}

    def on_prerun(task_id: str | None = None, **_: Any) -> None:
        if task_id:
            started[task_id] = time.perf_counter()

    def on_postrun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        begun = started.pop(task_id or "", None)
        if begun is not None and task is not None:
            TASK_DURATION.labels(task=task.name).observe(time.perf_counter() - begun)

    def on_retry(sender: Any = None, **_: Any) -> None:
        TASK_RETRIES.labels(task=getattr(sender, "name", "unknown")).inc()

    def on_failure(sender: Any = None, **_: Any) -> None:
        TASK_FAILURES.labels(task=getattr(sender, "name", "unknown")).inc()

    def on_child_exit(pid: int | None = None, **_: Any) -> None:
        mark_dead(pid or os.getpid())

    signals.task_prerun.connect(on_prerun, weak=False)
    signals.task_postrun.connect(on_postrun, weak=False)
    signals.task_retry.connect(on_retry, weak=False)
    signals.task_failure.connect(on_failure, weak=False)
    signals.worker_process_shutdown.connect(on_child_exit, weak=False)


# --- Processes --------------------------------------------------------------------------
def process_role(argv: Sequence[str]) -> str | None:
    """What kind of long-running process this is, or None (tests, migrate, shell, other commands)."""
    if not argv:
        return None
    words = [Path(part).name for part in argv]
    program = Path(argv[0])
    if {"daphne", "uvicorn", "gunicorn"} & {program.name, program.parent.name, *words[:2]}:
        return "web"
    if (program.parent.name, program.name) == ("trading", "serve.py") or "trading.serve" in words[:3]:
        return "web"  # the Procfile's shared-port uvicorn (trading/serve.py)
    if "celery" in {program.name, program.parent.name, *words[:3]}:
        return "beat" if "beat" in words else "worker" if "worker" in words else None
    if program.name == "manage.py" and len(words) > 1:
        command = words[1]
        return LONG_RUNNING_COMMANDS.get(command) or (command.removeprefix("run_") if command[:4] == "run_" else None)
    return None


class ProcessSampler:
    """Sets this process' memory and CPU gauges every `interval` seconds from a daemon thread."""

    def __init__(self, role: str, interval: float = SAMPLE_SECONDS) -> None:
        self.role = role
        self.interval = interval
        self._stop = threading.Event()
        self._process = psutil.Process()
        # Property 25's threshold: the alert fires there, and each process gives back what it can rebuild.
        self._pressure = MemoryPressureWatch(threshold_percent=settings.ALERT_THRESHOLDS["memory_percent"], role=role)

    def sample(self) -> None:
        with self._process.oneshot():
            PROCESS_MEMORY.labels(role=self.role).set(self._process.memory_info().rss)
            PROCESS_CPU.labels(role=self.role).set(self._process.cpu_percent(interval=None))
        self._pressure.observe(psutil.virtual_memory().percent)

    def start(self) -> None:
        threading.Thread(target=self._run, name="process-sampler", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except psutil.Error as error:
                logger.debug("process sample failed: %s", error)
            self._stop.wait(self.interval)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def mark_dead(pid: int) -> None:
    directory = multiprocess_dir()
    if directory and os.path.isdir(directory):
        multiprocess.mark_process_dead(pid, directory)


def reap_dead_processes() -> list[int]:
    """Mark dead every process that left live-gauge files behind (it died without saying so)."""
    directory = multiprocess_dir()
    if not directory:
        return []
    pids = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*.db")):
        match = LIVE_GAUGE_FILE.search(os.path.basename(path))
        if match:
            pids.add(int(match.group(1)))
    dead = sorted(pid for pid in pids if not psutil.pid_exists(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, directory)
    return dead


_installed = False


def install(*, argv: Sequence[str] | None = None) -> str | None:
    """Register the listener and signals (every process); start the sampler in long-running ones."""
    global _installed
    if _installed:
        return None
    _installed = True
    monitoring.register(QueryMetricsListener())
    connect_celery_signals()
    role = process_role(sys.argv if argv is None else argv)
    if role is not None and multiprocess_dir():
        ProcessSampler(role).start()
        os.register_at_fork(after_in_child=lambda: ProcessSampler(role).start())
        atexit.register(lambda: mark_dead(os.getpid()))
    return role
