"""The API rate limit with the real limit (100/minute) and the real Redis counter."""

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client, override_settings

REAL_LIMIT = "100/m"


@pytest.fixture(autouse=True)
def _real_limit(settings) -> Iterator[None]:
    """The real limit, and a stopped clock: a burst must not straddle two counting windows."""
    settings.API_RATE_LIMIT = REAL_LIMIT
    with time_machine.travel(datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC), tick=False):
        yield


def test_the_101st_request_in_a_minute_is_429_with_retry_after(make_trader) -> None:
    _, token = make_trader()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    responses = [client.get("/api/v1/me") for _ in range(101)]
    assert [r.status_code for r in responses[:100]] == [200] * 100
    refused = responses[100]
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["X-RateLimit-Remaining"] == "0"


def test_every_api_response_carries_the_limit_headers(make_trader) -> None:
    _, token = make_trader()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    first, second = client.get("/api/v1/me"), client.get("/api/v1/portfolio")
    assert (first["X-RateLimit-Limit"], first["X-RateLimit-Remaining"]) == ("100", "99")
    assert second["X-RateLimit-Remaining"] == "98"
    assert 0 <= int(first["X-RateLimit-Reset"]) <= 60
    not_found = client.get("/api/v1/orders/nope")
    assert not_found.status_code == 404 and not_found["X-RateLimit-Remaining"] == "97"


def test_each_trader_has_a_budget_of_their_own(make_trader) -> None:
    _, alice = make_trader()
    _, bob = make_trader()
    for _ in range(100):
        Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {alice}")
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {alice}").status_code == 429
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {bob}").status_code == 200


def test_a_session_user_is_counted_as_the_same_trader_as_their_token(make_trader) -> None:
    _, token = make_trader(name="dora", password="pw-12345")
    browser = Client()
    assert browser.login(username="dora", password="pw-12345")
    for _ in range(60):
        browser.get("/api/v1/me")
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token}")["X-RateLimit-Remaining"] == "39"


def test_anonymous_callers_are_limited_per_ip(db: None) -> None:
    for _ in range(100):
        Client(REMOTE_ADDR="10.0.0.1").get("/api/v1/me")
    assert Client(REMOTE_ADDR="10.0.0.1").get("/api/v1/me").status_code == 429
    assert Client(REMOTE_ADDR="10.0.0.2").get("/api/v1/me").status_code == 401  # its own budget, then auth


def test_invalid_tokens_share_the_ip_budget_so_they_cannot_dodge_the_limit(db: None) -> None:
    for n in range(100):
        Client(REMOTE_ADDR="10.0.0.3").get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer fake-{n}")
    assert Client(REMOTE_ADDR="10.0.0.3").get("/api/v1/me", HTTP_AUTHORIZATION="Bearer other").status_code == 429


def test_pages_outside_the_api_are_not_limited(db: None) -> None:
    response = Client().get("/login/")
    assert response.status_code == 200 and "X-RateLimit-Limit" not in response


def test_the_limit_is_a_setting(make_trader, settings) -> None:
    settings.API_RATE_LIMIT = "3/m"
    _, token = make_trader()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert [client.get("/api/v1/me").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_with_redis_down_the_api_stays_up_and_says_so(make_trader, caplog) -> None:
    from apps.core.metrics import RATE_LIMIT_DEGRADED

    _, token = make_trader()
    dead_cache = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    before = RATE_LIMIT_DEGRADED._value.get()
    with override_settings(CACHES=dead_cache), caplog.at_level(logging.WARNING, logger="apps.core.ratelimit"):
        response = Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response
    assert "rate limiter unavailable" in caplog.text
    assert RATE_LIMIT_DEGRADED._value.get() == before + 1


@pytest.mark.parametrize("value", ["100", "ten/m", "0/m", "100/y", ""])
def test_a_bad_limit_setting_fails_at_start_up_naming_it(value) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "API_RATE_LIMIT": value}
    check = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True, check=False
    )
    assert check.returncode != 0 and "API_RATE_LIMIT" in check.stderr


def test_the_limit_also_holds_when_served_asynchronously(make_trader, settings) -> None:
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    settings.API_RATE_LIMIT = "2/m"
    _, token = make_trader()

    async def three_requests() -> list[tuple[int, str]]:
        client = AsyncClient()
        responses = [await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}) for _ in range(3)]
        return [(r.status_code, r["X-RateLimit-Remaining"]) for r in responses]

    assert async_to_sync(three_requests)() == [(200, "1"), (200, "0"), (429, "0")]


def test_a_token_is_looked_up_in_the_database_once_then_served_from_the_cache(make_trader, monkeypatch) -> None:
    from apps.core import tokens

    _, token = make_trader()
    lookups: list[str] = []
    real = tokens._load_context

    def counted(digest: str) -> object:
        lookups.append(digest)
        return real(digest)

    monkeypatch.setattr(tokens, "_load_context", counted)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    remaining = [client.get("/api/v1/me")["X-RateLimit-Remaining"] for _ in range(5)]
    assert remaining == ["99", "98", "97", "96", "95"]
    assert lookups == [tokens.token_digest(token)]
