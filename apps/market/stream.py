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

NumberedTick = tuple[str, Tick]  # (tick_id, tick): the id makes a re-delivered tick recognisable


def stream_key() -> str:
    return key(settings.TICK_STREAM)


def stage_append(pipe: Pipeline, numbered: Sequence[NumberedTick]) -> None:
    for tick_id, tick in numbered:
        fields: dict[str, str] = {"tick_id": tick_id, **tick.as_fields()}
        pipe.xadd(stream_key(), fields)  # type: ignore[arg-type]  # redis-py's stubs reject a plain dict[str, str]


def decode_entry(fields: dict[bytes, bytes]) -> NumberedTick:
    return fields[b"tick_id"].decode(), Tick.from_fields(fields)


def stream_backlog(client: redis.Redis) -> int:
    """Ticks appended and not yet stored (acknowledged entries are deleted)."""
    return int(client.xlen(stream_key()))


def ensure_consumer_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(stream_key(), CONSUMER_GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise
