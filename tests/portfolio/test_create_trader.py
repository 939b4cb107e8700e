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
def test_create_trader_staff_gets_admin_access() -> None:
    create_trader("dave", "--staff")
    user = Trader.objects.get(user__username="dave").user
    assert user.is_staff and user.is_superuser


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
