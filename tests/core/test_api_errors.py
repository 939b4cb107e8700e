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
