import time

import pytest
from django.test import Client, override_settings

from apps.core import redis as core_redis


@pytest.mark.django_db(transaction=True)
def test_healthz_is_200_when_every_dependency_answers(celery_worker_process: object) -> None:
    response = Client().get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["failed"] == []
    assert set(body["checks"]) == {"mongodb", "redis", "celery", "channel_layer"}


@pytest.mark.django_db
def test_healthz_is_503_naming_redis_when_redis_is_unreachable() -> None:
    dead = "redis://127.0.0.1:1/0"
    dead_layer = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [dead]}}}
    core_redis.redis_client.cache_clear()
    try:
        with override_settings(REDIS_URL=dead, CHANNEL_LAYERS=dead_layer):
            from channels.layers import channel_layers

            channel_layers.backends.clear()
            started = time.monotonic()
            response = Client().get("/healthz")
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
