"""The tick stream: the simulator appends, the persister reads it through a consumer group.

Entries are never trimmed by length on append (that would drop unstored
ticks); the persister deletes entries only after it has stored and
acknowledged them, so the stream length is the backlog (Property 9).
"""

from collections.abc import Sequence

import redis
from django.conf import settings
from redis.client import Pipeline

from apps.core.redis import key
from apps.market.ticks import Tick

CONSUMER_GROUP = "persister"
ENTRY_FIELD = "t"
ENTRY_FIELD_BYTES = ENTRY_FIELD.encode()

NumberedTick = tuple[str, Tick]  # (tick_id, tick): the id makes a re-delivered tick recognisable


def stream_key() -> str:
    return key(settings.TICK_STREAM)


def entry_text(tick_id: str, tick: Tick) -> str:
    """A tick as one stream field: tick id, price, previous close, volume, time, then the symbol (it may hold
    anything, so it goes last and splitting stops before it). One field instead of six: the simulator packs,
    and the persister parses, two arguments a tick instead of twelve."""
    return f"{tick_id}|{tick.price!r}|{tick.previous_close!r}|{tick.volume}|{tick.timestamp}|{tick.symbol}"


def stage_append(pipe: Pipeline, numbered: Sequence[NumberedTick]) -> None:
    stream = stream_key()
    for tick_id, tick in numbered:
        pipe.xadd(stream, {ENTRY_FIELD: entry_text(tick_id, tick)})


def decode_entry(fields: dict[bytes, bytes]) -> NumberedTick:
    """A stream entry's tick; entries in the older six-field form (written before an upgrade) still decode."""
    packed = fields.get(ENTRY_FIELD_BYTES)
    if packed is None:
        return fields[b"tick_id"].decode(), Tick.from_fields(fields)
    tick_id, price, close, volume, at, symbol = packed.decode().split("|", 5)
    return tick_id, Tick(symbol, float(price), float(close), int(volume), int(at))


def stream_backlog(client: redis.Redis) -> int:
    """Ticks appended and not yet stored (acknowledged entries are deleted)."""
    return int(client.xlen(stream_key()))


def ensure_consumer_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(stream_key(), CONSUMER_GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise
