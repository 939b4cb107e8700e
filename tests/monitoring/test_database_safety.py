"""Database safety: declared indexes are checked, and a request's queries share a time limit."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from pymongo import _csot

from apps.monitoring import indexes
from apps.monitoring.indexes import expected_indexes, missing_indexes
from apps.monitoring.middleware import RequestMetricsMiddleware

SYMBOL_INDEX = "symbol_sector_ticker"


def test_expected_indexes_are_derived_from_the_models() -> None:
    described = {index.describe() for index in expected_indexes()}
    assert "market_symbol {sector: 1, ticker: 1} (market.Symbol Meta.indexes symbol_sector_ticker)" in described
    assert "market_symbol {ticker: 1} unique (market.Symbol.ticker unique)" in described
    assert any(d.startswith("monitoring_metricsample {resolution: 1, recorded_at: -1}") for d in described)
    assert "core_apitoken {user_id: 1} (core.ApiToken.user db_index)" in described  # ForeignKeys are indexed


@pytest.mark.django_db(transaction=True)
def test_check_indexes_detects_a_dropped_index() -> None:
    collection = connection.database["market_symbol"]
    before = {index.describe() for index in missing_indexes()}
    collection.drop_index(SYMBOL_INDEX)
    try:
        dropped = {index.describe() for index in missing_indexes()} - before
        assert dropped == {"market_symbol {sector: 1, ticker: 1} (market.Symbol Meta.indexes symbol_sector_ticker)"}
        with pytest.raises(CommandError, match="symbol_sector_ticker"):
            call_command("check_indexes", "--quiet")
    finally:
        collection.create_index([("sector", 1), ("ticker", 1)], name=SYMBOL_INDEX)
    assert {index.describe() for index in missing_indexes()} == before


def test_check_indexes_lists_every_index_and_succeeds_when_none_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from apps.monitoring.management.commands import check_indexes

    monkeypatch.setattr(check_indexes, "missing_indexes", lambda: [])
    call_command("check_indexes")
    output = capsys.readouterr().out
    assert f"all {len(expected_indexes())} declared indexes present" in output
    assert "ok       market_symbol {sector: 1, ticker: 1}" in output


def test_an_unreachable_database_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.monitoring.management.commands import check_indexes

    def unreachable() -> list:
        raise ConnectionError("no server at 127.0.0.1:1")

    monkeypatch.setattr(check_indexes, "missing_indexes", unreachable)
    with pytest.raises(CommandError, match="cannot read indexes from MongoDB: no server"):
        call_command("check_indexes")


def test_the_start_up_check_logs_missing_indexes_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unreachable() -> list:
        raise ConnectionError("not up yet")

    monkeypatch.setattr(indexes, "missing_indexes", unreachable)
    indexes.log_missing_indexes()
    assert "index check skipped: not up yet" in caplog.text


def test_every_request_runs_under_the_database_deadline(settings: object) -> None:
    settings.MONGODB_REQUEST_TIMEOUT_MS = 1500  # type: ignore[attr-defined]
    seen = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(_csot.get_timeout())
        return HttpResponse()

    RequestMetricsMiddleware(view)(RequestFactory().get("/api/v1/me"))
    assert seen == [1.5]
    assert _csot.get_timeout() is None  # and only during the request


def test_an_api_request_past_its_deadline_gets_a_503_naming_the_cause(
    auth_header: dict[str, str], settings: object
) -> None:
    settings.MONGODB_REQUEST_TIMEOUT_MS = 1  # type: ignore[attr-defined]
    response = Client(raise_request_exception=False).get("/api/v1/me", **auth_header)  # type: ignore[arg-type]
    assert response.status_code == 503
    assert response.json()["code"] == "database_timeout"
    assert response["Retry-After"]


def test_a_page_past_its_deadline_gets_a_503_too(db: None, settings: object) -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("ops", "ops@example.com", "ops-pass", is_staff=True)
    client = Client()
    client.login(username="ops", password="ops-pass")
    settings.MONGODB_REQUEST_TIMEOUT_MS = 1  # type: ignore[attr-defined]
    response = client.get("/ops/")
    assert response.status_code == 503


def test_the_api_turns_a_wrapped_database_timeout_into_a_503() -> None:
    from django.db import DatabaseError
    from pymongo.errors import ExecutionTimeout

    from trading.api import database_error

    try:
        try:
            raise ExecutionTimeout("operation exceeded time limit", code=50)
        except ExecutionTimeout as timeout:
            raise DatabaseError from timeout  # what django-mongodb-backend does
    except DatabaseError as wrapped:
        response = database_error(RequestFactory().get("/api/v1/me"), wrapped)
    assert response.status_code == 503
    with pytest.raises(DatabaseError):
        database_error(RequestFactory().get("/api/v1/me"), DatabaseError("duplicate key"))
