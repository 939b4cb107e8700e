import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


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
