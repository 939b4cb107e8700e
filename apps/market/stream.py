"""The tick stream: the simulator appends, the persister reads it through a consumer group.

Entries are never trimmed by length on append (that would drop unstored
ticks); the persister deletes entries only after it has stored and
acknowledged them, so the stream length is the backlog (Property 9).
"""

import time
from collections.abc import Sequence
from typing import Any

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


CLAIM_IDLE_MS = 60_000
LiveTick = tuple[str, int, int]  # (symbol, price in cents, timestamp in ms)


class TickGroupReader:
    """The tick stream through a consumer group of its own, for a reader that only needs live ticks (the order
    matcher): a new group starts at the end of the stream; the reader acknowledges and never deletes (the
    persister's acknowledgement deletes, so an entry gone before this group read it is simply skipped)."""

    BLOCK_MS = 200

    def __init__(self, client: redis.Redis, *, group: str, consumer: str) -> None:
        self.client, self.group, self.consumer = client, group, consumer
        self._own_pending = True  # after a crash: first what we were given and never acknowledged
        self._next_claim = 0.0
        try:
            client.xgroup_create(stream_key(), group, id="$", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def read(self, count: int) -> list[tuple[bytes, LiveTick | None]]:
        """Entries as (entry id, tick or None when its data is gone)."""
        if self._own_pending:
            entries = self._read_group("0", count, block=None)
            if entries:
                return entries
            self._own_pending = False
        if time.monotonic() >= self._next_claim:  # entries a dead reader of the group was given
            self._next_claim = time.monotonic() + CLAIM_IDLE_MS / 1000
            reply: Any = self.client.xautoclaim(stream_key(), self.group, self.consumer, CLAIM_IDLE_MS, count=count)
            gone = [(entry_id, None) for entry_id in (reply[2] if len(reply) > 2 else [])]
            claimed = [(entry_id, self._tick(fields)) for entry_id, fields in reply[1]] + gone
            if claimed:
                return claimed
        return self._read_group(">", count, block=self.BLOCK_MS)

    def _read_group(self, start: str, count: int, *, block: int | None) -> list[tuple[bytes, Any]]:
        reply: Any = self.client.xreadgroup(self.group, self.consumer, {stream_key(): start}, count=count, block=block)
        return [(entry_id, self._tick(fields)) for _, entries in (reply or []) for entry_id, fields in entries]

    @staticmethod
    def _tick(fields: dict[bytes, bytes] | None) -> LiveTick | None:
        if not fields:
            return None  # the persister stored and deleted it before we read it
        _, tick = decode_entry(fields)
        return tick.symbol, round(tick.price * 100), tick.timestamp

    def acknowledge(self, entry_ids: Sequence[bytes]) -> None:
        if entry_ids:
            self.client.xack(stream_key(), self.group, *entry_ids)  # never XDEL: the persister owns deletion
