"""manage.py check_indexes: list the indexes the models declare and report the missing ones (exit 1)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.monitoring.indexes import expected_indexes, missing_indexes


class Command(BaseCommand):
    help = "List every index the models declare; exit non-zero naming those MongoDB lacks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quiet", action="store_true", help="print only the missing indexes")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            missing = missing_indexes()
        except Exception as error:  # an unreachable database is a clear one-line error, not a traceback
            raise CommandError(f"cannot read indexes from MongoDB: {error}") from error
        if not options["quiet"]:
            for index in expected_indexes():
                state = "MISSING" if index in missing else "ok"
                self.stdout.write(f"{state:8} {index.describe()}")
        if missing:
            raise CommandError(
                f"{len(missing)} declared index(es) missing (run `manage.py migrate`): "
                + "; ".join(index.describe() for index in missing)
            )
        self.stdout.write(self.style.SUCCESS(f"all {len(expected_indexes())} declared indexes present"))
