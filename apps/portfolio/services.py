"""Writes for traders: accounts and (later) orders."""

from decimal import Decimal

from django.contrib.auth.models import User
from django_mongodb_backend import transaction

from apps.core.tokens import token_create
from apps.portfolio.models import Trader


class TraderError(ValueError):
    """A request to create or change a trader that cannot be honoured."""


def trader_create(
    *, username: str, cash: Decimal, staff: bool = False, password: str | None = None
) -> tuple[Trader, str]:
    """Create a user, its trader profile and an API token; returns the token once."""
    username = username.strip()
    if not username:
        raise TraderError("username: must not be empty")
    if not cash.is_finite() or cash < 0:
        raise TraderError(f"cash: must be a non-negative amount, got {cash}")
    cash = cash.quantize(Decimal("0.01"))
    if User.objects.filter(username=username).exists():
        raise TraderError(f"username: {username!r} already exists")
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password, is_staff=staff, is_superuser=staff)
        trader = Trader.objects.create(user=user, cash=cash, starting_cash=cash)
        token = token_create(user=user)
    return trader, token


def trader_for_user(user: User) -> Trader:
    """The user's trader profile, created with starting cash on first use (e.g. a superuser)."""
    trader, _ = Trader.objects.get_or_create(user=user)
    return trader
