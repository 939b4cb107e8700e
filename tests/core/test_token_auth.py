from typing import Any

import pytest
from django.test import Client


@pytest.mark.django_db
def test_a_valid_bearer_token_authenticates(auth_header: dict[str, str]) -> None:
    response = Client().get("/api/v1/me", **auth_header)
    assert response.status_code == 200
    assert response.json() == {
        "username": "alice",
        "is_staff": False,
        "cash": "100000.00",
        "reserved_cash": "0.00",
        "buying_power": "100000.00",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Bearer ", "Basic YWxpY2U6eA==", "Bearer " + "x" * 500])
def test_a_wrong_or_missing_token_gets_401_json(trader: object, header: str | None) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = Client().get("/api/v1/me", **extra)
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "unauthorized"


@pytest.mark.django_db
def test_tokens_are_stored_hashed(trader: tuple[object, str]) -> None:
    from apps.core.models import ApiToken

    stored = ApiToken.objects.get()
    assert trader[1] not in (stored.digest, stored.prefix)
    assert len(stored.digest) == 64


@pytest.mark.django_db
def test_a_logged_in_browser_session_authenticates(trader: tuple[Any, str]) -> None:
    trader[0].user.set_password("alice-pass")
    trader[0].user.save(update_fields=["password"])
    client = Client()
    assert client.login(username="alice", password="alice-pass")
    assert client.get("/api/v1/me").json()["username"] == "alice"


@pytest.mark.django_db
def test_a_deactivated_user_s_token_is_refused(trader: tuple[object, str]) -> None:
    user = trader[0].user  # type: ignore[attr-defined]
    user.is_active = False
    user.save()
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {trader[1]}").status_code == 401


@pytest.mark.django_db
def test_the_token_lookup_on_every_api_request_uses_an_index(trader: tuple[object, str]) -> None:
    from apps.core.models import ApiToken

    plan = ApiToken.objects.filter(digest="0" * 64).explain()
    assert "IXSCAN" in plan
    assert "COLLSCAN" not in plan
