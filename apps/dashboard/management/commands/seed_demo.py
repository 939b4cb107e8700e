from decimal import Decimal

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.market.selectors import symbol_count
from apps.market.services import symbols_seed
from apps.portfolio.services import trader_create

DEMO_PASSWORD = "demo"  # noqa: S105 - a documented local demo account, never used in production
MAX_SYMBOLS = 5000
MAX_TRADERS = 10000


def _bounded(name: str, upper: int) -> "type[int]":
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise CommandError(f"--{name}: {text!r} is not a whole number") from None
        if not 0 <= value <= upper:
            raise CommandError(f"--{name}: must be between 0 and {upper}, got {value}")
        return value

    return parse  # type: ignore[return-value]


class Command(BaseCommand):
    help = "Create the demo market (symbols) and demo traders. Idempotent: existing data is kept."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbols", type=_bounded("symbols", MAX_SYMBOLS), default=500)
        parser.add_argument("--traders", type=_bounded("traders", MAX_TRADERS), default=50)
        parser.add_argument("--seed", type=int, default=7, help="universe seed (same seed, same companies)")
        parser.add_argument("--if-empty", action="store_true", help="do nothing when any symbol exists")
        parser.add_argument("--force", action="store_true", help="seed even outside development (DJANGO_DEBUG off)")

    def handle(self, *args: object, **options: int) -> None:
        if not (settings.DEVELOPMENT or options["force"]):
            # The demo accounts' password is published (README, this file): never create them unasked.
            raise CommandError(
                "refused outside development (DJANGO_DEBUG is off): demo accounts share a public password; "
                "--force to seed anyway"
            )
        if options["if_empty"] and symbol_count() > 0:
            self.stdout.write("Demo data already present; nothing to do.")
            return
        show = options["verbosity"] > 0
        with tqdm(total=options["symbols"], desc="symbols", unit="sym", disable=not show) as bar:
            for handled in symbols_seed(count=options["symbols"], seed=options["seed"]):
                bar.update(handled)
        usernames = ["demo"] + [f"trader{n:03d}" for n in range(1, options["traders"])]
        missing = [u for u in usernames[: options["traders"]] if not User.objects.filter(username=u).exists()]
        for username in tqdm(missing, desc="traders", unit="trader", disable=not show):
            trader_create(username=username, cash=Decimal("100000.00"), superuser=username == "demo")
        # Hash the shared demo password once: one PBKDF2 run instead of one per trader.
        User.objects.filter(username__in=missing).update(password=make_password(DEMO_PASSWORD))
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {symbol_count()} symbols, {User.objects.count()} users "
                f"(log in as demo / {DEMO_PASSWORD})."
            )
        )
