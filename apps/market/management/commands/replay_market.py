import logging
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.market.management.commands._arguments import bounded
from apps.market.management.commands.run_market import progress_line, stop_on_sigterm
from apps.market.simulator import RecordingError, RedisTickSink, TickRunner, read_recording, replay_schedule

logger = logging.getLogger("apps.market.simulator")


class Command(BaseCommand):
    help = "Play a recording made by `run_market --record` through the live path (quotes, rings, feed, stream)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE")
        parser.add_argument("--speed", type=bounded("speed", float, 0, 1000), default=1.0, help="2 = twice as fast")

    def handle(self, *args: object, **options: Any) -> None:
        path = Path(options["file"])
        try:
            with path.open(encoding="utf-8") as lines:
                count = sum(1 for _ in read_recording(lines))  # check it all before sending anything
        except OSError as error:
            raise CommandError(f"FILE: cannot read {path}: {error.strerror}") from None
        except (RecordingError, UnicodeDecodeError) as error:
            raise CommandError(f"FILE: {path}: {error}") from None
        runner = TickRunner(RedisTickSink(), backlog_limit=settings.TICK_BACKLOG_LIMIT)
        logger.info("replay: %s ticks from %s at %sx, run %s", count, path, options["speed"], runner.run_id)
        previous_handler = signal.signal(signal.SIGTERM, stop_on_sigterm)
        with path.open(encoding="utf-8") as lines:
            try:
                stats = runner.run(
                    replay_schedule(read_recording(lines), speed=options["speed"]),
                    report=lambda s: logger.info("replay: %s", progress_line(s)),
                )
            except KeyboardInterrupt:
                stats = runner.stats
            finally:
                signal.signal(signal.SIGTERM, previous_handler)
        self.stdout.write(f"Replay finished: {progress_line(stats)}")
