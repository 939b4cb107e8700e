from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from apps.market.models import Sector, Symbol
from apps.market.universe import generate_universe


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out, verbosity=0)
    return out.getvalue()


@pytest.mark.django_db
def test_seed_demo_creates_a_realistic_universe_and_traders() -> None:
    seed("--symbols", "60", "--traders", "3")
    assert Symbol.objects.count() == 60
    assert set(Symbol.objects.values_list("sector", flat=True)) == set(Sector.values)
    assert get_user_model().objects.filter(username__in=["demo", "trader001", "trader002"]).count() == 3
    symbol = Symbol.objects.first()
    assert symbol is not None and 2 <= len(symbol.ticker) <= 5 and symbol.initial_price > 0


@pytest.mark.django_db
def test_seed_demo_is_idempotent() -> None:
    seed("--symbols", "40", "--traders", "2")
    seed("--symbols", "40", "--traders", "2")
    assert Symbol.objects.count() == 40
    assert get_user_model().objects.count() == 2


@pytest.mark.django_db
def test_seed_demo_if_empty_leaves_existing_data_alone() -> None:
    seed("--symbols", "10", "--traders", "1")
    assert "nothing to do" in seed("--symbols", "50", "--if-empty")
    assert Symbol.objects.count() == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--symbols", "-3"], "--symbols: must be between 0 and 5000"), (["--traders", "many"], "not a whole number")],
)
def test_seed_demo_rejects_bad_arguments(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        seed(*args)


def test_the_universe_is_reproducible_and_tickers_are_unique() -> None:
    first, second = generate_universe(500, seed=3), generate_universe(500, seed=3)
    assert first == second
    assert len({c.ticker for c in first}) == 500


@pytest.mark.django_db
def test_demo_traders_can_log_in_with_the_demo_password() -> None:
    from django.test import Client

    seed("--symbols", "5", "--traders", "2")
    assert Client().login(username="trader001", password="demo")
    demo = get_user_model().objects.get(username="demo")
    assert demo.is_staff


@pytest.mark.django_db
def test_seed_demo_refuses_outside_development_and_creates_nobody(settings) -> None:
    settings.DEVELOPMENT = False
    with pytest.raises(CommandError, match="refused outside development"):
        seed("--symbols", "5", "--traders", "2", "--if-empty")
    assert not get_user_model().objects.exists() and not Symbol.objects.exists()


@pytest.mark.django_db
def test_seed_demo_outside_development_runs_only_when_forced(settings) -> None:
    settings.DEVELOPMENT = False
    seed("--symbols", "5", "--traders", "2", "--force")
    assert get_user_model().objects.filter(username="demo").exists()
