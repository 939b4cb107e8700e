import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.core.redis import redis_client
from apps.core.shutdown import consumer_name, stop_requested
from apps.market.buckets import MongoBucketStore
from apps.market.management.commands._arguments import bounded
from apps.market.persister import PersisterStats, RedisTickSource, TickPersister, default_consumer_name

logger = logging.getLogger("apps.market.persister")

REPORT_EVERY_SECONDS = 5.0


def progress_line(stats: PersisterStats, elapsed: float) -> str:
    return (
        f"{stats.stored} ticks stored in {stats.writes} writes ({stats.writes / max(elapsed, 1e-9):.1f} writes/s), "
        f"{stats.duplicates} already stored, {stats.failures} failures, backlog {stats.backlog}"
    )


class Command(BaseCommand):
    help = "Store ticks from the Redis stream in MongoDB tick buckets: at most N writes/s, nothing lost or doubled."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--consumer", default=None, help="consumer name in the group (default: persister@host)")
        parser.add_argument(
            "--writes-per-second", type=bounded("writes-per-second", int, 1, 10), default=None, help="at most 10"
        )
        parser.add_argument("--duration", type=bounded("duration", float, 0, 10**7), default=None, help="seconds")

    def handle(self, *args: object, **options: Any) -> None:
        consumer = consumer_name(options["consumer"] if options["consumer"] is not None else default_consumer_name())
        with stop_requested() as stopping:  # finish the write under way, then leave
            stats, elapsed = self._persist(
                consumer,
                writes_per_second=options["writes_per_second"] or settings.PERSISTER_WRITES_PER_SECOND,
                duration=options["duration"],
                stopping=stopping,
            )
        self.stdout.write(f"Persister stopped: {progress_line(stats, elapsed)}")

    def _persist(
        self, consumer: str, *, writes_per_second: int, duration: float | None, stopping: Callable[[], bool]
    ) -> tuple[PersisterStats, float]:
        persister = TickPersister(
            RedisTickSource(redis_client(), consumer=consumer),
            MongoBucketStore(),
            writes_per_second=writes_per_second,
            batch_max=settings.PERSISTER_BATCH_MAX,
            poll_seconds=settings.PERSISTER_POLL_SECONDS,
        )
        started = time.monotonic()
        deadline = started + duration if duration else float("inf")
        next_report = started + REPORT_EVERY_SECONDS
        logger.info("persister %s: reading %s", consumer, settings.TICK_STREAM)
        while not stopping() and time.monotonic() < deadline:
            persister.step()
            if time.monotonic() >= next_report:
                logger.info("persister: %s", progress_line(persister.stats, time.monotonic() - started))
                next_report += REPORT_EVERY_SECONDS
        persister.flush()
        return persister.stats, time.monotonic() - started
