"""After a batch commits: answers, account events, cache invalidation and the stream acknowledgement, in
ONE Redis pipeline (one round trip), in that order. Nothing here runs before the commit, so no answer and
no event ever tells of a write that did not happen; the acknowledgement comes last, so an entry that is
acknowledged was answered.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import redis

from apps.core import account_events, order_stream
from apps.core.cache import stage_invalidate
from apps.core.metrics import ACCOUNT_EVENTS
from apps.portfolio.cache_keys import account_key, recent_orders_key
from apps.portfolio.engine.effects import Effects, Reply
from apps.portfolio.events import event_fields

logger = logging.getLogger(__name__)


def reply_message(reply: Reply) -> str:
    return json.dumps(reply.message(), separators=(",", ":"))


def publish(client: redis.Redis, effects: Effects, *, shard: int, acknowledge: Sequence[bytes]) -> None:
    """Answer, announce, invalidate, acknowledge (and trim what is acknowledged): one round trip."""
    pipe = client.pipeline(transaction=False)
    for reply in effects.replies:
        pipe.publish(reply.reply_to, reply_message(reply))
    by_user: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for user_id, name, payload in effects.events:
        by_user[user_id].append(event_fields(name, payload))
    for user_id, frames in by_user.items():
        account_events.stage_append(pipe, user_id, *frames)
    users = {user_id for user_id, _, _ in effects.events}
    if users:
        stage_invalidate(pipe, "profiles", [k for u in users for k in (account_key(u), recent_orders_key(u))])
    stream = order_stream.stream_key(shard)
    if acknowledge:
        pipe.xack(stream, order_stream.GROUP, *acknowledge)
        pipe.xtrim(stream, minid=acknowledge[-1], approximate=False)  # everything before it is decided
    pipe.execute()
    ACCOUNT_EVENTS.labels(outcome="published").inc(len(effects.events))
