from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.portfolio.services import TraderError, trader_create


def _amount(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise CommandError(f"--cash: {text!r} is not a number") from None


class Command(BaseCommand):
    help = "Create a trader (user, profile with virtual cash, API token). Prints the token once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--cash", type=_amount, default=None, help="starting cash (default TRADER_STARTING_CASH)")
        parser.add_argument("--staff", action="store_true", help="staff: admin and ops pages, no permission by itself")
        parser.add_argument("--superuser", action="store_true", help="superuser: every permission (implies staff)")
        parser.add_argument("--password", default=None, help="password for browser login (default: none, token only)")

    def handle(self, *args: object, **options: object) -> None:
        cash = options["cash"] if options["cash"] is not None else settings.TRADER_STARTING_CASH
        password = str(options["password"]) if options["password"] else None
        if password is not None:
            try:  # AUTH_PASSWORD_VALIDATORS, as the admin's password forms apply them
                validate_password(password, user=User(username=str(options["username"])))
            except ValidationError as error:
                raise CommandError(f"--password: {' '.join(error.messages)}") from None
        try:
            trader, token = trader_create(
                username=str(options["username"]),
                cash=Decimal(str(cash)),
                staff=bool(options["staff"]),
                superuser=bool(options["superuser"]),
                password=password,
            )
        except TraderError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Created trader {trader.user.get_username()} with cash {trader.cash}.")
        self.stdout.write(f"API token (shown once, store it now): {token}")
