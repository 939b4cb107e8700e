"""The one way ticks reach live subscribers.

Each symbol has its own Redis pub/sub channel (`SymbolChannel.name`); a tick is
published only there, so only connections subscribed to that symbol see it
(Property 5). Publishing is staged on the caller's pipeline so a batch of ticks
costs one round trip together with the quote, ring and stream writes.
"""

import json
from collections.abc import Sequence

from redis.client import Pipeline

from apps.core.redis import key
from apps.market.ticks import Tick


class SymbolChannel:
    @staticmethod
    def name(symbol: str) -> str:
        return key("feed", symbol)


def stage_publish(pipe: Pipeline, ticks: Sequence[Tick]) -> None:
    for tick in ticks:
        pipe.publish(SymbolChannel.name(tick.symbol), json.dumps(tick.as_update(), separators=(",", ":")))
