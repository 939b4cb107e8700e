"""manage.py rebuild_leaderboard: recompute the rankings now (what the beat job does every minute)."""

import time
from typing import Any

from django.core.management.base import BaseCommand

from apps.leaderboard.services import leaderboard_rebuild


class Command(BaseCommand):
    help = "Recompute the leaderboard snapshot now and drop its cached pages."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("Valuing every trader at the latest prices…")
        started = time.monotonic()
        snapshot = leaderboard_rebuild()
        self.stdout.write(
            self.style.SUCCESS(
                f"Ranked {snapshot.trader_count} traders in {time.monotonic() - started:.2f} s "
                f"(computed_at {snapshot.computed_at:%Y-%m-%d %H:%M:%S} UTC)."
            )
        )
