import logging
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core import order_stream
from apps.core.redis import redis_client
from apps.core.shutdown import consumer_name, stop_requested
from apps.portfolio.engine.runner import Engine, Fenced, serve

logger = logging.getLogger("apps.portfolio.engine")


class Command(BaseCommand):
    help = "Run the order engine of one shard: the only writer of its accounts, orders and trades (ADR 0008)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--shard", type=int, default=0, help="which shard, from 0 to ENGINE_SHARDS - 1")
        parser.add_argument("--consumer", default=None, help="name in the stream's group (default: engine-K@host)")
        parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: until stopped)")

    def handle(self, *args: object, **options: Any) -> None:
        shard = options["shard"]
        if not 0 <= shard < order_stream.shards():
            raise CommandError(f"--shard: must be from 0 to {order_stream.shards() - 1} (ENGINE_SHARDS), got {shard}")
        duration = options["duration"]
        if duration is not None and not 0 < duration <= 10**7:
            raise CommandError("--duration: must be a number of seconds from 0 to 10000000")
        consumer = consumer_name(options["consumer"]) if options["consumer"] else None
        engine = Engine(shard, client=redis_client(), consumer=consumer)
        deadline = time.monotonic() + duration if duration else float("inf")
        with stop_requested() as stopping:  # finish the batch under way, then leave
            try:
                serve(engine, stopping=stopping, deadline=deadline)
            except Fenced as fenced:
                raise CommandError(f"{fenced}: another engine runs this shard") from None
        self.stdout.write(
            f"Engine {shard} stopped: {engine.decided} commands decided, {len(engine.state.book)} resting"
        )
