"""Failed logins are throttled (django-axes, Redis cache handler) on the site's and the admin's login pages."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "violet-anchor-meadow-42"


@pytest.fixture
def account() -> User:
    return User.objects.create_user(username="victor", password=PASSWORD, is_staff=True)


def log_in(client: Client, path: str, password: str) -> int:
    return client.post(path, {"username": "victor", "password": password}).status_code


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_five_failed_logins_lock_the_account_out_from_that_address_even_with_the_right_password(
    account: User, path: str
) -> None:
    client = Client()
    assert [log_in(client, path, f"wrong-{n}") for n in range(4)] == [200] * 4  # the form again, with an error
    assert log_in(client, path, "wrong-5") == 429
    assert log_in(client, path, PASSWORD) == 429
    assert "_auth_user_id" not in client.session


def test_the_lockout_is_per_client_address(account: User) -> None:
    for n in range(5):
        log_in(Client(REMOTE_ADDR="198.51.100.7"), "/login/", f"wrong-{n}")
    assert log_in(Client(REMOTE_ADDR="198.51.100.8"), "/login/", PASSWORD) == 302


def test_a_successful_login_resets_the_count(account: User) -> None:
    client = Client()
    for n in range(4):
        log_in(client, "/login/", f"wrong-{n}")
    assert log_in(client, "/login/", PASSWORD) == 302
    for n in range(4):
        assert log_in(Client(), "/login/", f"wrong-again-{n}") == 200


def test_an_operator_lifts_one_lockout_early(account: User) -> None:
    from django.core.management import call_command

    client = Client()
    for n in range(5):
        log_in(client, "/login/", f"wrong-{n}")
    assert log_in(client, "/login/", PASSWORD) == 429
    call_command("axes_reset_ip_username", "127.0.0.1", "victor", verbosity=0)
    assert log_in(client, "/login/", PASSWORD) == 302
