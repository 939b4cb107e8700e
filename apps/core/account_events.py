"""A trader's own events in Redis: a sequence number per trader, a bounded history, one fan-out channel.

The portfolio app appends (`apps/portfolio/events.py`: which events and what they carry); the feed
delivers (`apps/market/feed/account.py`: one reader per web process routes them to that trader's
sockets). Neither imports the other: they meet here, on plain frames.

One `append` (of one or more events) is one Lua call, so its steps cannot be torn apart by a concurrent
append:

- `INCR` the trader's sequence number (kept without expiry: a number never goes back, so a client's
  "last seen" stays meaningful however long it was away);
- `XADD` the frame to the trader's history stream with the sequence number as its id (`<seq>-0`),
  trimmed to ACCOUNT_EVENTS_HISTORY entries and expiring ACCOUNT_EVENTS_TTL_SECONDS after the last event;
- `PUBLISH` `"<user id> <frame>"` on the one channel every web process reads.

An append may name itself `once`: then it happens only if no append of that name did within the
history's life (`SET NX` of the name in the same script), so a job redelivered after it published, or
after it stored its effect and died before publishing, announces that effect once (Property 35).

The frame is finished inside the script (`{"type":"account","seq":N,` + the event's JSON), so it is
encoded once, by the publisher, whoever receives it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import redis
import redis.asyncio
from django.conf import settings
from redis.client import Pipeline
from redis.commands.core import Script

from apps.core.redis import key, redis_client

FRAME_TYPE = "account"
RESERVED_FIELDS = frozenset({"type", "seq"})

_APPEND = """
if #KEYS == 4 and not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[2]) then
  return 0
end
local seq = 0
for i = 4, #ARGV do
  seq = redis.call('INCR', KEYS[1])
  local frame = '{"type":"account","seq":' .. seq .. ',' .. ARGV[i]
  redis.call('XADD', KEYS[2], 'MAXLEN', '=', ARGV[1], seq .. '-0', 'f', frame)
  redis.call('PUBLISH', KEYS[3], ARGV[3] .. ' ' .. frame)
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return seq
"""


def channel() -> str:
    """The one pub/sub channel of every trader's events; a message is `"<user id> <frame>"`."""
    return key("account-events")


def sequence_key(user_id: object) -> str:
    return key("account-events", str(user_id), "seq")


def history_key(user_id: object) -> str:
    return key("account-events", str(user_id), "history")


def once_key(user_id: object, once: str) -> str:
    return key("account-events", str(user_id), "once", once)


def encode_body(fields: dict[str, Any]) -> str:
    """The event's JSON object without its opening brace: what the frame continues with after its seq."""
    clash = RESERVED_FIELDS & fields.keys()
    if clash:
        raise ValueError(f"an account event may not set {', '.join(sorted(clash))}")
    if not fields:
        raise ValueError("an account event has at least one field")
    return json.dumps(fields, separators=(",", ":"), allow_nan=False)[1:]


@cache
def _append_script() -> Script:
    return cast(Script, redis_client().register_script(_APPEND))


def append(user_id: object, *events: dict[str, Any], once: str | None = None) -> int:
    """Number, store and publish the user's events, in order, in one round trip; the last one's number.

    With `once`, only the first append of that name (within the history's life) does so; the others
    return 0. Raises redis.RedisError."""
    script = _append_script()
    history_ms = settings.ACCOUNT_EVENTS_TTL_SECONDS * 1000
    keys = [sequence_key(user_id), history_key(user_id), channel()]
    if once is not None:
        keys.append(once_key(user_id, once))
    args: list[str | int] = [settings.ACCOUNT_EVENTS_HISTORY, history_ms, str(user_id)]
    return int(script(keys=keys, args=[*args, *map(encode_body, events)]))


def stage_append(pipe: Pipeline, user_id: object, *events: dict[str, Any]) -> None:
    """`append` staged on a pipeline (the order engine's one round trip after each batch)."""
    history_ms = settings.ACCOUNT_EVENTS_TTL_SECONDS * 1000
    keys = [sequence_key(user_id), history_key(user_id), channel()]
    args: list[str | int] = [settings.ACCOUNT_EVENTS_HISTORY, history_ms, str(user_id)]
    _append_script()(keys=keys, args=[*args, *map(encode_body, events)], client=pipe)


def latest(user_id: object) -> int | None:
    """The user's last sequence number (0: none yet); None when Redis cannot say."""
    try:
        return int(redis_client().get(sequence_key(user_id)) or 0)
    except redis.RedisError:
        return None


@dataclass(frozen=True)
class History:
    latest: int  # the user's last sequence number (0: no event yet)
    frames: list[tuple[int, str]]  # (seq, frame) after the asked position, oldest first, at most the bound


async def history_after(client: redis.asyncio.Redis, user_id: object, after: int) -> History:
    """The user's stored frames numbered after `after`, with the latest number, read in one transaction."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.get(sequence_key(user_id))
        pipe.xrange(history_key(user_id), min=f"{after + 1}-0", max="+", count=settings.ACCOUNT_EVENTS_HISTORY)
        latest, entries = await pipe.execute()
    frames = [(int(entry_id.split(b"-")[0]), fields[b"f"].decode()) for entry_id, fields in entries]
    return History(latest=int(latest or 0), frames=frames)


def parse_message(data: bytes) -> tuple[str, int, str] | None:
    """(user id, seq, frame) of a channel message; None for anything that is not one of ours."""
    user_id, _, frame = data.decode(errors="replace").partition(" ")
    marker = f'{{"type":"{FRAME_TYPE}","seq":'
    if not frame.startswith(marker):
        return None
    digits = frame[len(marker) : frame.find(",", len(marker))]
    return (user_id, int(digits), frame) if digits.isdigit() else None
