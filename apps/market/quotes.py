"""Latest quotes in Redis: one key per symbol, read in one round trip for any number of symbols."""

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from redis.client import Pipeline

from apps.core import order_stream
from apps.core.redis import key, redis_client
from apps.market.ticks import Tick, tick_price_decimal


def quote_key(symbol: str) -> str:
    return key("quote", symbol)


def stage_quotes(pipe: Pipeline, ticks: Sequence[Tick]) -> None:
    """Stage the latest quote of each tick on `pipe` (the simulator's one round trip), and the same prices as
    one `ticks` command for the order engine, so resting orders and market orders meet them in sequence."""
    if ticks:
        pipe.mset(
            {quote_key(t.symbol): json.dumps({**t.as_update(), "previous_close": t.previous_close}) for t in ticks}
        )
        order_stream.stage_ticks(pipe, [(t.symbol, t.price) for t in ticks])


def latest_quotes(symbols: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The latest quote of each symbol that has one: one MGET whatever the count (Property 2)."""
    wanted = list(dict.fromkeys(symbols))
    if not wanted:
        return {}
    values = redis_client().mget([quote_key(s) for s in wanted])
    return {symbol: json.loads(raw) for symbol, raw in zip(wanted, values, strict=True) if raw is not None}


def latest_prices(symbols: Iterable[str]) -> dict[str, Decimal]:
    """Latest price per symbol as Decimal, for money arithmetic."""
    return {symbol: tick_price_decimal(q["price"]) for symbol, q in latest_quotes(symbols).items()}
