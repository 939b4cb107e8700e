from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from apps.portfolio.models import Trader


def create_trader(*args: str) -> str:
    out = StringIO()
    call_command("create_trader", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_create_trader_prints_a_working_token_once() -> None:
    output = create_trader("bob", "--cash", "2500.5")
    token = output.split("API token (shown once, store it now): ")[1].strip()
    assert Trader.objects.get(user__username="bob").cash == Decimal("2500.50")
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token}").json()["username"] == "bob"


@pytest.mark.django_db
def test_create_trader_defaults_to_the_configured_starting_cash() -> None:
    create_trader("carol")
    trader = Trader.objects.get(user__username="carol")
    assert trader.cash == Decimal("100000.00")
    assert not trader.user.is_staff


@pytest.mark.django_db
def test_create_trader_staff_gets_admin_access_without_becoming_superuser() -> None:
    create_trader("dave", "--staff")
    user = Trader.objects.get(user__username="dave").user
    assert user.is_staff and not user.is_superuser


@pytest.mark.django_db
def test_create_trader_superuser_is_asked_for_by_name() -> None:
    create_trader("root2", "--superuser")
    user = Trader.objects.get(user__username="root2").user
    assert user.is_staff and user.is_superuser


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("abcd", "too short"),
        ("password123", "too common"),
        ("4815162342", "entirely numeric"),
        ("gracehopper1", "similar"),
    ],
)
def test_create_trader_refuses_a_weak_password_naming_it(password: str, message: str) -> None:
    with pytest.raises(CommandError, match=rf"--password: .*{message}"):
        create_trader("gracehopper", "--password", password)
    assert not Trader.objects.exists()


@pytest.mark.django_db
def test_create_trader_accepts_a_strong_password_for_browser_login() -> None:
    create_trader("heidi", "--password", "violet-anchor-meadow-42")
    assert Client().login(username="heidi", password="violet-anchor-meadow-42")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cash", "-1"], "cash: must be a non-negative amount"),
        (["--cash", "lots"], "--cash: 'lots' is not a number"),
        (["--cash", "NaN"], "cash: must be a non-negative amount"),
    ],
)
def test_create_trader_rejects_bad_cash_with_one_line(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        create_trader("erin", *args)
    assert not Trader.objects.exists()


@pytest.mark.django_db
def test_create_trader_rejects_an_existing_name() -> None:
    create_trader("frank")
    with pytest.raises(CommandError, match="'frank' already exists"):
        create_trader("frank")
    assert Trader.objects.count() == 1
