"""Shared fixtures. Services (MongoDB, Redis) come from tests/stack_plugin.py."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import NoReturn

import pytest
from django.conf import settings
from django.db import connection, connections

from apps.core.cache import default_cache
from apps.core.redis import redis_client
from apps.portfolio.services import trader_create

BASE_DIR = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup` (make test) every browser test runs on one worker: one live server per module
    and one Chromium for all of them, instead of one of each on every worker."""
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.xdist_group("browser"))


@pytest.hookimpl(tryfirst=True)
def pytest_itemcollected(item: pytest.Item) -> None:
    """A test that uses the database may use both aliases: market data lives on "market" (trading/db_router.py).

    So the market database is set up, and flushed after each test, like the default one."""
    marker = item.get_closest_marker("django_db")
    if marker is None and not {"db", "transactional_db"} & set(getattr(item, "fixturenames", ())):
        return
    kwargs = dict(marker.kwargs) if marker is not None else {}
    if kwargs.get("databases") is not None:
        return
    args = marker.args if marker is not None else ()
    item.add_marker(pytest.mark.django_db(*args, **{**kwargs, "databases": ["default", "market"]}), append=False)


# What migrate's post_migrate makes (content types and permissions) and no test changes: kept across the
# flush after each test, so the flush need not make them again.
KEPT_ACROSS_FLUSHES = frozenset({"django_content_type", "auth_permission"})


@pytest.fixture(scope="session", autouse=True)
def _flush_keeps_content_types_and_permissions() -> Iterator[None]:
    """A database test ends with Django's flush: delete_many on every collection, then post_migrate, which makes
    every content type and permission again. That re-creation was 0.25 s a test and the flush 0.1 s (half of
    tests/portfolio/test_place_order.py's time). The two collections post_migrate fills are kept instead, and
    post_migrate is not sent again (its only receivers are those two makers); the collections are listed
    once, not asked for their options one by one."""
    from django.core.management.commands import flush
    from django_mongodb_backend.operations import DatabaseOperations

    def execute_sql_flush(self: DatabaseOperations, tables: list[str]) -> None:
        database = self.connection.database
        capped = {c["name"] for c in database.list_collections() if c.get("options", {}).get("capped")}
        for table in tables:
            if not table.startswith("system.") and table not in capped and table not in KEPT_ACROSS_FLUSHES:
                database[table].delete_many({})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "execute_sql_flush", execute_sql_flush)
        patch.setattr(flush, "emit_post_migrate_signal", lambda *args, **kwargs: None)
        yield


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with an empty Redis database of its own (see stack_plugin)."""
    redis_client().flushdb()
    default_cache().local.clear()  # the in-process L1 must not carry values across the flush
    default_cache().breaker.reset()  # nor a Redis outage a previous test staged
    yield


def missing_tool(message: str) -> NoReturn:
    """Skip on a developer's machine without the tool; under CI a missing tool fails the run instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must have it: .ci/run installs it)", pytrace=False)
    pytest.skip(message)


def service_env() -> dict[str, str]:
    """Environment for a process that must see the test database (worker, server)."""
    return {
        **os.environ,
        "MONGODB_NAME": connection.settings_dict["NAME"],
        "MONGODB_TICKS_NAME": connections["market"].settings_dict["NAME"],
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def celery_worker_process(django_db_setup: None) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker on the test broker and test database (with the tasks of tests/worker_tasks.py)."""
    argv = [sys.executable, "-m", "celery", "-A", "trading", "worker", "--pool", "solo"]
    argv += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--hostname", f"test-{os.getpid()}@%h"]
    argv += ["--include", "tests.worker_tasks"]  # tasks of the tests' own (a job that always fails)
    worker = subprocess.Popen(argv, cwd=BASE_DIR, env=service_env())
    try:
        from trading.celery import app

        deadline = time.monotonic() + 30
        while not app.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not come up")
        yield worker
    finally:
        worker.terminate()
        worker.wait(timeout=20)


class EngineThread:
    """One shard's real engine (apps/portfolio/engine/runner.py) on a thread of the test process, on the
    test's MongoDB and Redis: what `manage.py run_engine` runs, minus the process."""

    BLOCK_MS = 20  # a stop takes at most this long

    def __init__(self, shard: int) -> None:
        from apps.portfolio.engine.runner import Engine

        self.engine = Engine(shard, client=redis_client())
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"engine-{shard}", daemon=True)

    def _run(self) -> None:
        from apps.portfolio.engine.runner import serve

        try:
            serve(self.engine, stopping=self.stopping.is_set, block_ms=self.BLOCK_MS, on_step=self.ready.set)
        except BaseException as error:  # shown by the fixture, not lost in a thread
            self.error = error
            self.ready.set()
            raise
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


@contextlib.contextmanager
def running_engines() -> Iterator[list[EngineThread]]:
    """Every shard's order engine (ENGINE_SHARDS, 2 in tests) on a thread, each past its first step."""
    from apps.core import order_stream

    engines = [EngineThread(shard) for shard in range(order_stream.shards())]
    for running in engines:
        running.thread.start()
    try:
        for running in engines:
            if not running.ready.wait(timeout=30) or running.error is not None:
                raise RuntimeError(f"engine {running.engine.shard} did not start: {running.error}")
        yield engines
    finally:
        for running in engines:
            running.stop()


@pytest.fixture
def order_engine(db: None, _clean_redis: None) -> Iterator[list[EngineThread]]:
    """Every shard's order engine running for the test; stopped before the next test's flush."""
    with running_engines() as engines:
        yield engines


@pytest.fixture
def trader(db: None, order_engine: list[EngineThread]) -> tuple[object, str]:
    """A trader with the default cash and its API token (no password: hashing one costs about half a second of
    CPU on purpose; a test that logs in with one sets it)."""
    return trader_create(username="alice", cash=Decimal(settings.TRADER_STARTING_CASH))


@pytest.fixture
def auth_header(trader: tuple[object, str]) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {trader[1]}"}
