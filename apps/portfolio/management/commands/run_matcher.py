import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from pymongo.errors import PyMongoError

from apps.core.backoff import backoff_delay
from apps.core.redis import redis_client
from apps.core.shutdown import consumer_name, stop_requested
from apps.portfolio.matching import Matcher, matcher_for

logger = logging.getLogger("apps.portfolio.matching")

REPORT_EVERY_SECONDS = 30.0


class Command(BaseCommand):
    help = "Fill resting limit and stop orders when live ticks cross them (exactly once), and expire day orders."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--consumer", default=None, help="name in the matcher group (default: matcher@host)")
        parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: until stopped)")

    def handle(self, *args: object, **options: Any) -> None:
        consumer = consumer_name(options["consumer"] or f"matcher@{socket.gethostname()}")
        duration = options["duration"]
        if duration is not None and not 0 < duration <= 10**7:
            raise CommandError("--duration: must be a number of seconds from 0 to 10000000")
        with stop_requested() as stopping:  # finish the fill under way, then leave
            matcher = matcher_for(consumer, redis_client())
            matcher.load()
            logger.info("matcher %s: %d resting orders", consumer, len(matcher.book))
            self._match(matcher, duration=duration, stopping=stopping)
        self.stdout.write(f"Matcher stopped: {matcher.fills} fills, {len(matcher.book)} resting orders")

    @staticmethod
    def _match(matcher: Matcher, *, duration: float | None, stopping: Callable[[], bool]) -> None:
        """Step until stopped; Redis or MongoDB unreachable: wait with backoff (the ticks wait in the stream)."""
        started = time.monotonic()
        deadline = started + duration if duration else float("inf")
        next_report = started + REPORT_EVERY_SECONDS
        failures = 0
        while not stopping() and time.monotonic() < deadline:
            try:
                matcher.step()
                failures = 0
            except (redis.RedisError, PyMongoError, DatabaseError) as error:
                pause = backoff_delay(failures, base=0.5, maximum=30.0)
                logger.warning("matcher: %s; retrying in %.1f s", error, pause)
                time.sleep(pause)
                failures += 1
            if time.monotonic() >= next_report:
                logger.info("matcher: %d fills, %d resting orders", matcher.fills, len(matcher.book))
                next_report += REPORT_EVERY_SECONDS
