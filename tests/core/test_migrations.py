import subprocess
import sys

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.conftest import BASE_DIR, service_env


@pytest.mark.django_db
def test_every_migration_is_applied_on_the_embedded_database() -> None:
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
    collections = set(connection.database.list_collection_names())
    assert {"auth_user", "django_content_type", "django_admin_log", "market_symbol", "portfolio_trader"} <= collections


@pytest.mark.django_db
def test_symbol_tickers_are_unique_in_the_database() -> None:
    indexes = connection.database["market_symbol"].index_information()
    assert any(info.get("unique") and info["key"] == [("ticker", 1)] for info in indexes.values())


@pytest.mark.django_db
def test_the_database_checks_that_migrate_runs_pass_for_every_installed_model() -> None:
    """`manage.py migrate` runs the database-tagged checks (the backend refuses an AutoField primary key,
    mongodb.E001) that the test database's creation skips; `make run` must not stop there."""
    env = {**service_env(), "DJANGO_DEBUG": "true"}
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "check",
            "--database",
            "default",
            "--database",
            "market",
            "--fail-level",
            "ERROR",
        ],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
