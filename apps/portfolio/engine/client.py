"""Sending a command to the engine and waiting for its answer: the web's side (async), and a blocking one for
admin, management commands and tests.

The web appends the command with XADD and awaits its answer on the event loop: one reply listener per
process and loop (one pub/sub channel of its own), futures by request id; no thread hop, no ORM, no lock.
The engine publishes each answer after its batch commits. No answer within ENGINE_REPLY_TIMEOUT_SECONDS,
Redis down, or a shard whose heartbeat stopped (its database is down): `EngineUnavailable`, which the API
answers 503 with Retry-After; a retry with the same client_order_id returns the original outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from typing import Any

from django.conf import settings

from apps.core import order_stream
from apps.core.admission import parked
from apps.core.redis import REDIS_ERRORS, async_redis_client, key, redis_client
from apps.portfolio.engine.commands import Caller, Requested, as_fields
from apps.portfolio.engine.runner import heartbeat_key

logger = logging.getLogger(__name__)

HEARTBEAT_CHECK_SECONDS = 0.5


class EngineUnavailable(Exception):
    """No answer from the engine (timed out, Redis unreachable, or the shard is down)."""


def caller_for(*, account_id: Any, user_id: Any, reply_to: str) -> Caller:
    return Caller(account_id=account_id, user_id=user_id, request_id=uuid.uuid4().hex, reply_to=reply_to)


def _reply_channel(kind: str) -> str:
    return key("engine-replies", kind, f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


# --- async: the web -------------------------------------------------------------------------------------


class ReplyListener:
    """One per event loop: a subscription to this process' reply channel, futures by request id, and the
    shards' heartbeats (checked twice a second, so a refused order costs no Redis call)."""

    def __init__(self) -> None:
        self.channel = _reply_channel("web")
        self.client = async_redis_client()
        self.futures: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ready = asyncio.Event()
        self.alive: dict[int, bool] = {}
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                pubsub = self.client.pubsub()
                await pubsub.subscribe(self.channel)
                await pubsub.get_message(timeout=2.0)  # the subscription's confirmation
                self.ready.set()
                failures = 0
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as error:
                self.ready.clear()
                logger.warning("engine replies: %s; resubscribing", error)
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))
                failures += 1

    async def _listen(self, pubsub: Any) -> None:
        next_check = 0.0
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=HEARTBEAT_CHECK_SECONDS)
            if message is not None and message.get("type") == "message":
                answer = json.loads(message["data"])
                future = self.futures.pop(str(answer.get("r")), None)
                if future is not None and not future.done():
                    future.set_result(answer)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + HEARTBEAT_CHECK_SECONDS
                beats = await self.client.mget([heartbeat_key(s) for s in range(order_stream.shards())])
                self.alive = {shard: beat is not None for shard, beat in enumerate(beats)}


_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReplyListener] = weakref.WeakKeyDictionary()


async def _listener() -> ReplyListener:
    loop = asyncio.get_running_loop()
    listener = _listeners.get(loop)
    if listener is None:
        listener = _listeners[loop] = ReplyListener()
    try:
        await asyncio.wait_for(listener.ready.wait(), timeout=2.0)
    except TimeoutError:
        raise EngineUnavailable("the engine's answers cannot be received (Redis)") from None
    return listener


async def submit(command_for: Any, *, account_id: Any, user_id: Any) -> dict[str, Any]:
    """Append the command `command_for(caller)` builds to its shard's stream and await the engine's answer."""
    listener = await _listener()
    shard = order_stream.shard_of(account_id)
    if listener.alive and not listener.alive.get(shard, False):
        raise EngineUnavailable(f"order engine {shard} is not running")
    command: Requested = command_for(caller_for(account_id=account_id, user_id=user_id, reply_to=listener.channel))
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    listener.futures[command.caller.request_id] = future
    try:
        await listener.client.xadd(order_stream.stream_key(shard), order_stream.encode(as_fields(command)))  # type: ignore[arg-type]
        with parked():  # waiting on the engine: the request's admission slot serves another meanwhile
            return await asyncio.wait_for(future, timeout=settings.ENGINE_REPLY_TIMEOUT_SECONDS)
    except TimeoutError:
        raise EngineUnavailable("the order engine did not answer in time") from None
    except REDIS_ERRORS as error:
        raise EngineUnavailable(f"the order stream is unreachable ({error})") from None
    finally:
        listener.futures.pop(command.caller.request_id, None)


# --- blocking: admin, commands, tests --------------------------------------------------------------------


class SyncReplyListener:
    """One per process for synchronous callers: a thread on one subscription of its own (a connection outside
    the shared pool), handing each answer to the caller waiting for its request id. A pub/sub connection per
    call held a pooled connection for the whole wait: 20 concurrent callers (admin, commands, test threads)
    emptied the pool, and the engine sharing it (in tests) could no longer read its stream."""

    def __init__(self) -> None:
        self.channel = _reply_channel("sync")
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._thread = threading.Thread(target=self._run, name="engine-replies", daemon=True)
        self._thread.start()

    def expect(self, request_id: str) -> tuple[threading.Event, list[dict[str, Any]]]:
        slot: tuple[threading.Event, list[dict[str, Any]]] = (threading.Event(), [])
        with self._lock:
            self._waiting[request_id] = slot
        return slot

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._waiting.pop(request_id, None)

    def _run(self) -> None:
        import redis

        failures = 0
        while True:
            try:
                client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2.0, health_check_interval=30)
                pubsub = client.pubsub()
                pubsub.subscribe(self.channel)
                pubsub.get_message(timeout=2.0)  # the subscription's confirmation
                self.ready.set()
                failures = 0
                while True:
                    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    answer = json.loads(message["data"])
                    with self._lock:
                        slot = self._waiting.pop(str(answer.get("r")), None)
                    if slot is not None:
                        slot[1].append(answer)
                        slot[0].set()
            except REDIS_ERRORS as error:
                self.ready.clear()
                logger.warning("engine replies (sync): %s; resubscribing", error)
                time.sleep(min(2.0, 0.05 * 2**failures))
                failures += 1


_sync_listeners: dict[int, SyncReplyListener] = {}
_sync_lock = threading.Lock()


def _sync_listener() -> SyncReplyListener:
    pid = os.getpid()  # a forked child subscribes again
    with _sync_lock:
        listener = _sync_listeners.get(pid)
        if listener is None:
            listener = _sync_listeners[pid] = SyncReplyListener()
    if not listener.ready.wait(timeout=2.0):
        raise EngineUnavailable("the engine's answers cannot be received (Redis)")
    return listener


def submit_blocking(command_for: Any, *, account_id: Any, user_id: Any, timeout: float | None = None) -> dict[str, Any]:
    """The same as `submit`, for synchronous callers: XADD, then wait for the answer on the process' listener."""
    listener = _sync_listener()
    command: Requested = command_for(caller_for(account_id=account_id, user_id=user_id, reply_to=listener.channel))
    deadline = time.monotonic() + (settings.ENGINE_REPLY_TIMEOUT_SECONDS if timeout is None else timeout)
    request_id = command.caller.request_id
    arrived, answers = listener.expect(request_id)
    try:
        redis_client().xadd(
            order_stream.stream_key(order_stream.shard_of(account_id)),
            order_stream.encode(as_fields(command)),  # type: ignore[arg-type]
        )
        if arrived.wait(timeout=max(0.0, deadline - time.monotonic())):
            return answers[0]
    except REDIS_ERRORS as error:
        raise EngineUnavailable(f"the order stream is unreachable ({error})") from None
    finally:
        listener.forget(request_id)
    raise EngineUnavailable("the order engine did not answer in time")
