"""The engine's loop for one shard: read a batch, prefetch, decide, commit, publish. One way through.

    stream (apps/core/order_stream.py) -> read (up to ENGINE_BATCH_MAX commands, or ENGINE_BATCH_WINDOW_MS
    after the first) -> prefetch (accounts and orders the batch names that are not in memory) -> rules
    (each command, in order, against memory; no I/O) -> journal (ONE transaction) -> publish (ONE
    pipeline: answers, events, cache, acknowledgement)

Crash safety: nothing is acknowledged or answered before its commit. A restarted engine reloads its
state from MongoDB and first re-reads what it was given and never acknowledged: an entry up to the
committed checkpoint is answered from the state (it is not decided again), a later one is decided
(it was never written). Entry-derived order ids and the unique (account, client_order_id) make a
repeat harmless either way.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from pymongo.client_session import ClientSession

from apps.core import order_stream
from apps.core.clock import moment
from apps.core.clock import now_ms as wall_ms
from apps.core.metrics import ENGINE_BATCH, ENGINE_BOOK, ENGINE_COMMANDS, ENGINE_COMMIT_SECONDS, ENGINE_LAG
from apps.market.selectors import every_latest_price
from apps.portfolio.engine import journal
from apps.portfolio.engine.commands import BadCommand, Cancel, Close, Command, Place, Requested, caller_of, parse
from apps.portfolio.engine.effects import Effects, order_fields
from apps.portfolio.engine.ids import entry_position, order_id_at
from apps.portfolio.engine.journal import Fenced
from apps.portfolio.engine.publish import publish
from apps.portfolio.engine.rules import Signer, _answer_replay, decide
from apps.portfolio.engine.state import EngineState, OrderState
from apps.portfolio.invoices import CertifiedContent, content_code

logger = logging.getLogger(__name__)

__all__ = ["Engine", "Fenced", "serve"]

Entry = tuple[bytes, dict[bytes, bytes] | None]
WINDOW_POLL_SECONDS = 0.001  # while a batch window is open, the stream is read again this often
HEARTBEAT_SECONDS = 3  # the web refuses orders fast (503) when a shard's heartbeat is older than this


def heartbeat_key(shard: int) -> str:
    from apps.core.redis import key

    return key("engine", shard, "alive")


def sign_fill(order: OrderState, number: int) -> str:
    """The invoice's verification code, made in the batch from the fill's content (apps/portfolio/invoices.py)."""
    assert order.price_cents is not None and order.amount_cents is not None
    content = CertifiedContent(
        str(order.id),
        str(order.account_id),
        order.symbol,
        order.side,
        order.quantity,
        _decimal(order.price_cents),
        _decimal(order.amount_cents),
        moment(order.created_ms),
        number,
    )
    return content_code(content)


def _decimal(cents: int) -> Any:
    from decimal import Decimal

    return Decimal(cents).scaleb(-2)


@dataclass
class Decided:
    """One read batch, split: entries to decide now, and entries the checkpoint says were committed."""

    fresh: list[tuple[str, Command | None, dict[str, Any] | None]]
    committed: list[tuple[str, Command]]


class Engine:
    """One shard's engine. `start()` loads; `step()` runs one batch and returns how many commands it read."""

    def __init__(
        self,
        shard: int,
        *,
        client: redis.Redis,
        batch_max: int | None = None,
        window_ms: float | None = None,
        day_ms: int | None = None,
        sign: Signer = sign_fill,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now_ms: Callable[[], int] = wall_ms,
        consumer: str | None = None,
    ) -> None:
        self.shard, self.client, self.sign = shard, client, sign
        self.clock, self.sleep, self.now_ms = clock, sleep, now_ms
        self.batch_max = batch_max or settings.ENGINE_BATCH_MAX
        self.window_ms = settings.ENGINE_BATCH_WINDOW_MS if window_ms is None else window_ms
        self.day_ms = day_ms or settings.ORDER_DAY_SECONDS * 1000
        self.consumer = consumer or f"engine-{shard}@{socket.gethostname()}"
        self.stream = order_stream.stream_key(shard)
        self.state = EngineState(shard)
        self.checkpoint = journal.Checkpoint(0, "0-0")
        self.session: ClientSession | None = None  # MongoDB's, owned by this engine from its claim on
        self.decided = 0
        self._own_pending = True
        self._expiry_sent_at = -1.0
        self._heartbeat_at = -1.0

    # --- loading ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Take the shard (fencing an older engine), load its open orders and their accounts, seed prices."""
        try:
            self.client.xgroup_create(self.stream, order_stream.GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        if self.session is not None:
            self.session.end_session()  # a reload: the new session's claim fences this one's work
        self.session = journal.open_session()
        self.checkpoint = journal.claim(self.shard, self.session)
        state = EngineState(self.shard)
        resting = journal.open_orders(order_stream.shard_of, self.shard)
        state.accounts = journal.load_shard_accounts(order_stream.shard_of, self.shard)
        for order in resting:
            state.rest(order)
        state.prices = every_latest_price()  # the freshest known; the stream's ticks follow
        self.state = state
        self._own_pending = True
        ENGINE_BOOK.set(len(state.book))
        logger.info("engine %d: epoch %d, %d resting orders", self.shard, self.checkpoint.epoch, len(resting))

    # --- one batch --------------------------------------------------------------------------------------
    def step(self, *, block_ms: int = 200) -> int:
        entries = self._read(block_ms)
        self._send_expiry_when_due()
        self._beat()
        if not entries:
            return 0
        batch = self._split(entries)
        self._prefetch([command for _, command, _ in batch.fresh if command is not None])
        self._prefetch([command for _, command in batch.committed])
        effects = Effects()
        for entry, command, raw in batch.fresh:
            effects.at_ms = entry_position(entry)[0]
            if command is None:
                self._refuse_unreadable(effects, raw)
                continue
            decide(self.state, command, effects, at_ms=effects.at_ms, entry=entry, sign=self.sign, day_ms=self.day_ms)
            ENGINE_COMMANDS.labels(kind=type(command).__name__.lower()).inc()
        for entry, command in batch.committed:
            self._answer_committed(effects, entry, command)
        if batch.fresh and effects.writes:
            self._commit(effects, last_entry=batch.fresh[-1][0])
        publish(self.client, effects, shard=self.shard, acknowledge=[entry_id for entry_id, _ in entries])
        self.decided += len(batch.fresh)
        ENGINE_BATCH.observe(len(entries))
        ENGINE_BOOK.set(len(self.state.book))
        return len(entries)

    def _read(self, block_ms: int) -> list[Entry]:
        """Up to batch_max entries: after a restart first our own unacknowledged ones, then new ones, gathering
        for window_ms after the first arrives.

        The window is paced here, never by a short Redis BLOCK: Redis wakes blocked clients whose time-out
        passed only on its own clock tick (hz 10: up to 100 ms late), which made a 5 ms window cost every
        order about 90 ms. So the window polls without blocking, at most every WINDOW_POLL_SECONDS."""
        if self._own_pending:
            pending = self._read_group("0", self.batch_max, block=None)
            if pending:
                return pending
            self._own_pending = False
        entries = self._read_group(">", self.batch_max, block=block_ms)
        if not entries or self.window_ms <= 0:
            return entries
        until = self.clock() + self.window_ms / 1000
        while len(entries) < self.batch_max and (left := until - self.clock()) > 0:
            self.sleep(min(left, WINDOW_POLL_SECONDS))
            entries += self._read_group(">", self.batch_max - len(entries), block=None)
        return entries

    def _read_group(self, start: str, count: int, *, block: int | None) -> list[Entry]:
        reply: Any = self.client.xreadgroup(
            order_stream.GROUP, self.consumer, {self.stream: start}, count=count, block=block
        )
        return [(entry_id, fields or None) for _, found in (reply or []) for entry_id, fields in found]

    def _split(self, entries: Sequence[Entry]) -> Decided:
        checkpoint = entry_position(self.checkpoint.last_entry)
        batch = Decided([], [])
        for entry_id, fields in entries:
            entry = entry_id.decode()
            raw = order_stream.decode(fields) if fields else None
            try:
                command = parse(raw) if raw is not None else None
            except BadCommand as error:
                logger.warning("engine %d: entry %s refused: %s", self.shard, entry, error)
                command = None
            if entry_position(entry) <= checkpoint:
                if command is not None:
                    batch.committed.append((entry, command))
                continue
            batch.fresh.append((entry, command, raw))
        return batch

    def _prefetch(self, commands: Sequence[Command]) -> None:
        """Load the accounts the batch names and the engine has not seen, and the orders it must answer with."""
        state = self.state
        wanted = {
            c.caller.account_id
            for c in commands
            if isinstance(c, Requested)
            and c.caller.account_id not in state.accounts
            and order_stream.shard_of(c.caller.account_id) == self.shard
        }
        if wanted:
            state.accounts.update(journal.load_accounts(wanted))
        orders = set()
        for command in commands:
            if isinstance(command, Place | Close) and (account := state.accounts.get(command.caller.account_id)):
                known = account.client_orders.get(command.client_order_id)
                if known is not None and state.order(known) is None:
                    orders.add(known)
            elif isinstance(command, Cancel) and state.order(command.order_id) is None:
                orders.add(command.order_id)
        for order in journal.load_orders(orders) if orders else []:
            if order.id not in state.open_orders:
                state.remember(order)

    def _commit(self, effects: Effects, *, last_entry: str) -> None:
        started = time.perf_counter()
        assert self.session is not None  # start() opened it
        journal.commit(
            effects, session=self.session, shard=self.shard, epoch=self.checkpoint.epoch, last_entry=last_entry
        )
        ENGINE_COMMIT_SECONDS.observe(time.perf_counter() - started)
        self.checkpoint = journal.Checkpoint(self.checkpoint.epoch, last_entry)
        ENGINE_LAG.set(max(0.0, (self.now_ms() - effects.at_ms) / 1000))

    # --- answers that decide nothing --------------------------------------------------------------------
    @staticmethod
    def _refuse_unreadable(effects: Effects, raw: dict[str, Any] | None) -> None:
        caller = caller_of(raw) if raw is not None else None
        if caller is not None:
            detail = "the engine could not read this command"
            effects.refuse(caller.reply_to, caller.request_id, 422, "invalid_command", "command", detail)

    def _answer_committed(self, effects: Effects, entry: str, command: Command) -> None:
        """An entry re-read after a crash whose batch had committed: answer what it did, decide nothing."""
        if not isinstance(command, Requested):
            return
        caller = command.caller
        order = None
        if isinstance(command, Place | Close) and (account := self.state.accounts.get(caller.account_id)):
            known = account.client_orders.get(command.client_order_id)
            order = self.state.order(known) if known is not None else None
            if order is not None and order.id.binary > order_id_at(entry, self.shard).binary:
                order = None  # made by a later entry of the batch: this one was refused, its answer unknown
        elif isinstance(command, Cancel):
            order = self.state.order(command.order_id)
            if order is not None and order.account_id != caller.account_id:
                order = None  # another account's order: it was refused (404), never shown
        if isinstance(command, Place | Close) and order is not None and order.id != order_id_at(entry, self.shard):
            _answer_replay(effects, command, order)  # its first answer again: the order, or a conflict
            return
        if order is not None:
            created = isinstance(command, Place | Close) and order.id == order_id_at(entry, self.shard)
            effects.answer(caller.reply_to, caller.request_id, 201 if created else 200, order=order_fields(order))
            return
        # A refusal (nothing was written) or an adjustment: its first answer may have been lost, so the
        # caller is told to look or retry, never a second, possibly different, decision.
        detail = "the engine restarted while answering; check the account, then retry"
        effects.refuse(caller.reply_to, caller.request_id, 503, "engine_restarted", "client_order_id", detail)

    # --- the clock's commands ---------------------------------------------------------------------------
    def _send_expiry_when_due(self) -> None:
        """Day orders end on the clock: the engine appends an `expire` command to its own stream when one is
        due, so expiry is sequenced with everything else (at most once a second while it waits)."""
        due = self.state.next_expiry_ms()
        now = self.clock()
        if due is None or due > self.now_ms() or now - self._expiry_sent_at < 1.0:
            return
        self._expiry_sent_at = now
        self.client.xadd(self.stream, order_stream.encode({"k": "expire", "now": self.now_ms()}))  # type: ignore[arg-type]

    def _beat(self) -> None:
        now = self.clock()
        if now - self._heartbeat_at >= 1.0:
            self._heartbeat_at = now
            self.client.set(heartbeat_key(self.shard), self.checkpoint.epoch, px=HEARTBEAT_SECONDS * 1000)


RECOVERABLE = (redis.RedisError, OSError)


def serve(
    engine: Engine,
    *,
    stopping: Callable[[], bool],
    deadline: float = float("inf"),
    block_ms: int = 200,
    on_step: Callable[[], None] | None = None,
) -> None:
    """Run `engine` until asked to stop. Redis or MongoDB failing: wait with backoff, then reload the state
    from MongoDB (what was decided and not committed is read again from the stream, never lost). Another
    engine taking the shard (journal.Fenced) ends it."""
    from django.db import DatabaseError
    from pymongo.errors import PyMongoError

    from apps.core.backoff import backoff_delay

    failures = 0
    started = False
    while not stopping() and time.monotonic() < deadline:
        try:
            if not started:
                engine.start()
                started = True
            engine.step(block_ms=block_ms)
            failures = 0
            if on_step is not None:
                on_step()
        except (*RECOVERABLE, PyMongoError, DatabaseError) as error:
            pause = backoff_delay(failures, base=0.1, maximum=5.0)
            logger.warning("engine %d: %s; reloading in %.1f s", engine.shard, error, pause)
            time.sleep(pause)
            failures += 1
            started = False
