"""Content-Security-Policy (django-csp) on the pages: own origin only, inline blocks only with the nonce."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

INLINE_TAG = re.compile(r"<(script|style)\b([^>]*)>", re.IGNORECASE)


def directives(response) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def client_of(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def assert_inline_blocks_carry_the_nonce(response) -> None:  # type: ignore[no-untyped-def]
    policy = directives(response)
    nonces = {value for value in policy["script-src"] if value.startswith("'nonce-")}
    assert len(nonces) == 1 and "'unsafe-inline'" not in policy["script-src"] + policy["style-src"]
    nonce = nonces.pop()[len("'nonce-") : -1]
    for tag, attributes in INLINE_TAG.findall(response.content.decode()):
        if "src=" in attributes or 'type="application/json"' in attributes:
            continue  # a file from 'self', or data (json_script) that CSP never runs
        assert f'nonce="{nonce}"' in attributes, f"<{tag}{attributes}> has no nonce"


@pytest.mark.parametrize("path", ["/login/", "/admin/login/", "/api/v1/docs"])
def test_every_page_sends_a_policy_limited_to_its_own_origin(path: str) -> None:
    response = Client().get(path)
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]  # the feed is same-origin
    assert not any(source.startswith(("http:", "https:", "*")) for values in policy.values() for source in values)


def test_the_dashboard_s_inline_theme_script_carries_the_response_s_nonce(trader) -> None:  # type: ignore[no-untyped-def]
    user = trader[0].user
    response = client_of(user).get("/")
    assert response.status_code == 200
    assert_inline_blocks_carry_the_nonce(response)
    assert 'id="bootstrap" type="application/json"' in response.content.decode()  # first screen as data


def test_the_ops_page_s_inline_styles_carry_the_nonce() -> None:
    response = client_of(User.objects.create_user("ops-csp", is_staff=True)).get("/ops/")
    assert response.status_code == 200
    assert_inline_blocks_carry_the_nonce(response)


def test_each_response_gets_a_fresh_nonce(trader) -> None:  # type: ignore[no-untyped-def]
    client = client_of(trader[0].user)
    first, second = (directives(client.get("/"))["script-src"] for _ in range(2))
    assert first != second
