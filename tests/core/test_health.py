import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from apps.core import health
from apps.core import redis as core_redis


@pytest.fixture(autouse=True)
def _fresh_health() -> Iterator[None]:
    """Each test sees checks run for it, not results another test left in the process."""
    health.recent_health.clear()
    yield
    health.recent_health.clear()


def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("ops-health", is_staff=True))
    return client


@pytest.mark.django_db(transaction=True)
def test_healthz_is_200_when_every_dependency_answers(celery_worker_process: object) -> None:
    response = staff_client().get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["failed"] == []
    assert set(body["checks"]) == {"mongodb", "redis", "celery", "channel_layer"}


@pytest.mark.django_db
def test_healthz_is_503_naming_redis_when_redis_is_unreachable() -> None:
    dead = "redis://127.0.0.1:1/0"
    dead_layer = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [dead]}}}
    client = staff_client()
    core_redis.redis_client.cache_clear()
    try:
        with override_settings(REDIS_URL=dead, CHANNEL_LAYERS=dead_layer):
            from channels.layers import channel_layers

            channel_layers.backends.clear()
            started = time.monotonic()
            response = client.get("/healthz")
            elapsed = time.monotonic() - started
    finally:
        core_redis.redis_client.cache_clear()
        from channels.layers import channel_layers

        channel_layers.backends.clear()
    body = response.json()
    assert response.status_code == 503
    assert "redis" in body["failed"]
    assert body["checks"]["mongodb"]["ok"] is True
    assert elapsed < 2.5


@pytest.mark.django_db
def test_healthz_names_celery_when_no_worker_answers() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["celery"]


@pytest.mark.django_db
def test_anonymous_callers_get_the_status_without_hosts_or_error_text() -> None:
    body = Client().get("/healthz").json()
    assert set(body) == {"status", "failed"}
    assert body == {"status": "degraded", "failed": ["celery"]}
    staff_view = staff_client().get("/healthz").json()  # the same (cached) results, with their details
    assert staff_view["checks"]["celery"]["ok"] is False and staff_view["checks"]["celery"]["detail"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.django_db
def test_a_burst_of_healthz_calls_fans_out_once_per_cache_period(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {}

    def counted(name: str, check: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            calls[name] = calls.get(name, 0) + 1
            return "ok"

        return run

    monkeypatch.setattr(health, "CHECKS", {name: counted(name, check) for name, check in health.CHECKS.items()})
    clock = FakeClock()
    monkeypatch.setattr(health.recent_health, "clock", clock)
    client = Client()
    assert {client.get("/healthz").status_code for _ in range(20)} == {200}
    assert calls == {"mongodb": 1, "redis": 1, "celery": 1, "channel_layer": 1}
    clock.now += 4.9
    client.get("/healthz")
    assert calls["redis"] == 1
    clock.now += 0.2  # past HEALTH_CACHE_SECONDS (5)
    client.get("/healthz")
    assert calls == {"mongodb": 2, "redis": 2, "celery": 2, "channel_layer": 2}
