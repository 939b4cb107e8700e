"""A token's cached context: no MongoDB call for a cached request, and a revoke that reaches every process."""

import threading
import time
from typing import Any

import pytest
from pymongo import monitoring

from apps.core.cache import TwoLayerCache
from apps.core.models import ApiToken
from apps.core.tokens import CACHE_NAMESPACE, token_context, token_digest
from tests.asgi_client import asgi_get


class ThreadCommands(monitoring.CommandListener):
    """MongoDB commands started by any thread while recording."""

    def __init__(self) -> None:
        self.recording = False
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.recording:
            self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


COMMANDS = ThreadCommands()
monitoring.register(COMMANDS)  # before the test client exists: applies to clients created later


@pytest.mark.django_db(transaction=True)
def test_a_cached_read_makes_no_mongodb_call(trader: Any) -> None:
    _, token = trader
    assert asgi_get("/api/v1/me", token)[0] == 200  # fills the token context and the profile
    COMMANDS.names.clear()
    COMMANDS.recording = True
    try:
        status, headers, body = asgi_get("/api/v1/me", token)
    finally:
        COMMANDS.recording = False
    assert status == 200 and b'"username":"alice"' in body.replace(b" ", b"")
    assert headers[b"x-ratelimit-limit"]
    assert COMMANDS.names == []


@pytest.mark.django_db(transaction=True)
def test_the_lean_api_stack_refuses_an_unknown_token_with_401(trader: Any) -> None:
    status, _headers, body = asgi_get("/api/v1/me", "not-a-token")
    assert status == 401 and b"unauthorized" in body


@pytest.mark.django_db(transaction=True)
def test_the_lean_api_stack_still_checks_the_host_header(trader: Any) -> None:
    status, _headers, _body = asgi_get("/api/v1/me", trader[1], host=b"evil.example")
    assert status == 400


@pytest.mark.django_db
def test_revoking_a_token_stops_it_at_once_in_every_process(trader: Any) -> None:
    _, token = trader
    other_process = TwoLayerCache()  # another server process' cache: its own L1 and invalidation listener
    try:
        other_process.listener.ensure_started()
        assert other_process.listener.wait_subscribed(5)
        digest = token_digest(token)
        assert token_context(token) is not None  # loaded here, now in Redis
        loaded = other_process.cached(CACHE_NAMESPACE, digest, lambda: pytest.fail("should come from Redis"))
        assert loaded is not None and f"{CACHE_NAMESPACE}:{digest}" in other_process.local

        ApiToken.objects.filter(digest=digest).delete()

        assert token_context(token) is None  # here at once
        deadline = time.monotonic() + 5
        while f"{CACHE_NAMESPACE}:{digest}" in other_process.local and time.monotonic() < deadline:
            threading.Event().wait(0.01)  # the pub/sub message is on its way
        assert f"{CACHE_NAMESPACE}:{digest}" not in other_process.local
        assert other_process.cached(CACHE_NAMESPACE, digest, lambda: pytest.fail("revoked: Redis says None")) is None
    finally:
        other_process.listener.stop()


@pytest.mark.django_db
def test_deactivating_a_user_stops_their_cached_token_at_once(trader: Any) -> None:
    user, token = trader[0].user, trader[1]
    assert token_context(token) is not None
    user.is_active = False
    user.save()
    assert token_context(token) is None


@pytest.mark.django_db
def test_an_unknown_tokens_answer_is_cached_only_briefly_and_a_known_ones_for_the_tokens_ttl(trader: Any) -> None:
    from django.conf import settings

    from apps.core.cache import default_cache
    from apps.core.redis import redis_client
    from apps.core.tokens import UNKNOWN_TOKEN_TTL_SECONDS

    cache = default_cache()
    unknown = "no-such-token-" + "x" * 20
    assert token_context(unknown) is None
    ttl_ms = redis_client().pttl(cache._l2_key(f"{CACHE_NAMESPACE}:{token_digest(unknown)}"))
    assert 0 < ttl_ms <= UNKNOWN_TOKEN_TTL_SECONDS * 1000  # a database that answered "none" mid-restart: 401 for 2 s

    _, token = trader
    assert token_context(token) is not None
    ttl_ms = redis_client().pttl(cache._l2_key(f"{CACHE_NAMESPACE}:{token_digest(token)}"))
    assert UNKNOWN_TOKEN_TTL_SECONDS * 1000 < ttl_ms <= settings.CACHE_TTLS[CACHE_NAMESPACE] * 1000
