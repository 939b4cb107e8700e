import logging
import secrets
import signal
from contextlib import ExitStack
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.market.management.commands._arguments import bounded
from apps.market.selectors import last_known_ticks, simulated_symbols
from apps.market.simulator import MarketSimulator, RedisTickSink, RunStats, TickRecorder, TickRunner

logger = logging.getLogger("apps.market.simulator")

MAX_SYMBOLS = 5000
MAX_RATE = 100_000


def progress_line(stats: RunStats) -> str:
    rate = stats.ticks / stats.elapsed if stats.elapsed else 0.0
    state = "ON (paused for the persister)" if stats.throttled else "off"
    return (
        f"{stats.ticks} ticks, {rate:.0f} ticks/s, backlog {stats.backlog}, "
        f"backpressure {state} ({stats.throttled_seconds:.1f} s paused)"
    )


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # unwinds through `with` blocks, so a recording is flushed and closed


class Command(BaseCommand):
    help = "Run the simulated market: ticks to Redis (quotes, rings, live feed) and the persistence stream."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=bounded("seed", int, 0, 2**63), default=None, help="same seed, same ticks")
        parser.add_argument(
            "--rate", type=bounded("rate", float, 0, MAX_RATE), default=None, help="ticks per second, all symbols"
        )
        parser.add_argument("--symbols", type=bounded("symbols", int, 1, MAX_SYMBOLS), default=500)
        parser.add_argument("--record", metavar="FILE", default=None, help="write every tick to FILE for replay")
        parser.add_argument("--duration", type=bounded("duration", float, 0, 10**7), default=None, help="seconds")

    def handle(self, *args: object, **options: Any) -> None:
        count: int = options["symbols"]
        symbols = simulated_symbols(count)
        if not symbols:
            raise CommandError("no active symbols are listed; run `manage.py seed_demo` first")
        seed: int = options["seed"] if options["seed"] is not None else secrets.randbits(32)
        rate = float(options["rate"] or settings.MARKET_TICK_RATE)
        with ExitStack() as stack:
            stack.callback(signal.signal, signal.SIGTERM, signal.signal(signal.SIGTERM, stop_on_sigterm))
            recorder = None
            if options["record"]:
                try:
                    recording = stack.enter_context(open(str(options["record"]), "w", encoding="utf-8"))
                except OSError as error:
                    raise CommandError(f"--record: cannot write {options['record']}: {error.strerror}") from None
                recorder = TickRecorder(recording)
            runner = TickRunner(RedisTickSink(), backlog_limit=settings.TICK_BACKLOG_LIMIT)
            # Resume each symbol at its last known price; a clean start (nothing known) is reproducible by --seed.
            resume_from = last_known_ticks([spec.ticker for spec in symbols])
            logger.info(
                "market: %s symbols (%s resumed from their last price), %.0f ticks/s, seed %s, run %s%s",
                len(symbols),
                len(resume_from),
                rate,
                seed,
                runner.run_id,
                f" (asked for {count})" if len(symbols) < count else "",
            )
            simulator = MarketSimulator(symbols, seed=seed, resume_from=resume_from)
            try:
                stats = runner.run(
                    simulator.paced(rate),
                    duration=options["duration"],
                    report=lambda s: logger.info("market: %s", progress_line(s)),
                    on_batch=recorder,
                )
            except KeyboardInterrupt:
                stats = runner.stats
        self.stdout.write(f"Market stopped: {progress_line(stats)}")
