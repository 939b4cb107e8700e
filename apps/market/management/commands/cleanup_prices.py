"""manage.py cleanup_prices [--days N] [--dry-run] [--batch-size N]: delete old price history now."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.market.retention import BATCH_SIZE, ticks_cutoff, ticks_delete_older_than, ticks_older_than_count

MAX_DAYS = 36_500


class Command(BaseCommand):
    help = "Delete stored ticks older than the retention, in small batches with pauses."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="keep this many days (default: the setting)")
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] if options["days"] is not None else settings.PRICE_HISTORY_RETENTION_DAYS
        if not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--days: must be between 1 and {MAX_DAYS}, got {days}")
        batch_size = options["batch_size"]
        if not 1 <= batch_size <= 50_000:
            raise CommandError(f"--batch-size: must be between 1 and 50000, got {batch_size}")
        cutoff = ticks_cutoff(days=days)
        total = ticks_older_than_count(cutoff=cutoff)
        self.stdout.write(f"{total} tick(s) recorded before {cutoff:%Y-%m-%d %H:%M:%S} UTC")
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing deleted.")
            return
        deleted = 0
        for batch in ticks_delete_older_than(cutoff=cutoff, batch_size=batch_size):
            deleted += batch
            self.stdout.write(f"deleted {deleted}/{total}")
        self.stdout.write(self.style.SUCCESS(f"Deleted {deleted} tick(s)."))
