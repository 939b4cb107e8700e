"""manage.py warm_cache: load the hot keys (leaderboard first pages, analytics) into the cache now."""

from typing import Any

from django.core.management.base import BaseCommand

from apps.dashboard.warmup import cache_warm


class Command(BaseCommand):
    help = "Load the hot cache keys (leaderboard first pages, analytics summary) now."

    def handle(self, *args: Any, **options: Any) -> None:
        count = cache_warm(progress=self.stdout.write)
        self.stdout.write(self.style.SUCCESS(f"Warmed {count} keys."))
