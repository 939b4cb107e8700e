"""The order engine's input: one Redis stream of commands per shard, `orders:<shard>` (ADR 0008).

Everything that changes an account goes through it, in one sequence per shard: the web appends orders
and cancels, the simulator appends each batch of ticks (to every shard: resting orders of any account
may wait on any symbol), operators append adjustments, and the engine appends its own expiry sweeps.
The engine (`manage.py run_engine --shard K`, apps/portfolio/engine/) reads it through a consumer
group and is the only writer of accounts, holdings, orders and trades.

A command is one stream field, `c`, holding a JSON object with its kind in `k`. This module knows the
keys and the tick encoding; what each command means is the engine's business.
"""

import json
import zlib
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from redis.client import Pipeline

from apps.core.redis import key

GROUP = "engine"
FIELD = "c"
FIELD_BYTES = FIELD.encode()
TICKS = "ticks"


def shards() -> int:
    return int(settings.ENGINE_SHARDS)


def shard_of(account_id: object) -> int:
    """The shard an account lives on: a stable hash of its id (the same in every process and every run)."""
    return zlib.crc32(str(account_id).encode()) % shards()


def stream_key(shard: int) -> str:
    return key("orders", shard)


def encode(command: dict[str, Any]) -> dict[str, str]:
    """The stream entry's fields for `command` (a JSON object with its kind in `k`)."""
    return {FIELD: json.dumps(command, separators=(",", ":"), allow_nan=False)}


def decode(fields: dict[bytes, bytes]) -> dict[str, Any] | None:
    """The command of a stream entry; None when it is not one (the engine answers and skips it)."""
    raw = fields.get(FIELD_BYTES)
    if raw is None:
        return None
    try:
        command = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return command if isinstance(command, dict) and isinstance(command.get("k"), str) else None


def stage_ticks(pipe: Pipeline, prices: Iterable[tuple[str, float]]) -> None:
    """Append one `ticks` command (symbol and price in cents, in order) to every shard's stream on `pipe`.

    The simulator calls this in its one round trip per batch, so ticks and orders share one sequence and
    whether a resting order fills before or after a new order is decided once, by the stream."""
    pairs = [[symbol, round(price * 100)] for symbol, price in prices]
    if not pairs:
        return
    fields = encode({"k": TICKS, "p": pairs})
    for shard in range(shards()):
        pipe.xadd(stream_key(shard), fields)  # type: ignore[arg-type]
