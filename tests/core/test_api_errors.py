import pytest
from django.test import Client
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from apps.portfolio import account_api as core_api


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("error", "code"),
    [(ServerSelectionTimeoutError("no servers"), "database_timeout"), (AutoReconnect("reset"), "database_unavailable")],
)
def test_an_unreachable_database_is_a_503_json_the_client_may_retry(
    monkeypatch: pytest.MonkeyPatch, auth_header: dict[str, str], error: Exception, code: str
) -> None:
    def unreachable(user: object) -> object:
        raise error

    monkeypatch.setattr(core_api, "trader_profile", unreachable)
    response = Client(raise_request_exception=False).get("/api/v1/me", **auth_header)
    assert response.status_code == 503
    assert response.json()["code"] == code
    assert int(response["Retry-After"]) > 0


@pytest.mark.django_db
@pytest.mark.parametrize("error", [ServerSelectionTimeoutError("no servers"), AutoReconnect("connection refused")])
def test_a_token_that_cannot_be_looked_up_while_the_database_is_down_is_a_503_not_a_401(
    monkeypatch: pytest.MonkeyPatch, auth_header: dict[str, str], error: Exception
) -> None:
    from apps.core import tokens
    from apps.core.cache import default_cache
    from apps.core.redis import redis_client

    def unreachable(digest: str) -> object:
        raise error

    redis_client().flushdb()  # the token's context is not cached: it must be loaded from the database
    default_cache().local.clear()
    monkeypatch.setattr(tokens, "_load_context", unreachable)
    response = Client(raise_request_exception=False).get("/api/v1/me", **auth_header)
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
