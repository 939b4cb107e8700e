"""Feature: trading-performance-optimization, Property 38: Data integrity preservation (and Property 35:
exactly-once orders, Property 36: crash recovery) — a deterministic simulation of the real order engine.

The way TigerBeetle and FoundationDB test their state machines: a seeded Hypothesis state machine drives
the REAL engine (apps/portfolio/engine/runner.Engine, one per shard) on the test's Redis streams and the
real journal on the test MongoDB with random places (market, limit, stop, stop limit; buy and sell;
repeated client_order_ids, the same or different terms), cancels (own, others', unknown), ticks (through
apps.market.quotes.stage_quotes, as the simulator sends them), expiry sweeps, batch boundaries (several
commands appended, then one step with a random batch_max) and crashes: before the commit writes
(journal.commit raises), after the commit before the answers and the acknowledgement (publish raises),
or between batches; a fresh Engine then takes the shard and re-reads its pending entries.

Stream entry ids come from a virtual clock (entries are appended with explicit ids), so order ids, times
and expiries are the same in every run; the engine's own expiry timer is off (its `now_ms` is 0).

After every step the COMMITTED state (traders, holdings, orders, invoices) must equal a plain serial model
(tests/portfolio/engine_model.py, written from the rules, not from rules.py), every answer must be the
model's, money and shares must be conserved as judged from the stored state alone, every order answered
200/201 must be stored, and no client_order_id may be used twice.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
import uuid
from collections import Counter
from typing import Any
from unittest import mock

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from apps.core import order_stream
from apps.core.redis import key, redis_client
from apps.market.quotes import stage_quotes
from apps.market.ticks import Tick
from apps.portfolio.engine import journal, runner
from apps.portfolio.engine.ids import entry_position
from apps.portfolio.engine.runner import Engine
from tests.portfolio import engine_model as em
from tests.portfolio.conftest import list_symbols

SYMBOLS = ("ACME", "BOLT")
DAY_MS = 300
CLOCK_START = 4_000_000_000_000  # 2096: ahead of the wall clock, so Redis' own ids follow ours
SHARDS = 2
ACCOUNTS = [a for shard in range(SHARDS) for a in em.accounts_on(shard, 2)]
STEPS: Counter[str] = Counter()  # what the runs did, printed at the end

price_cents = st.integers(90, 110).map(lambda n: n * 10)  # 9.00 .. 11.00: orders cross often
waits = st.integers(1, 120)
order_asked = st.tuples(
    st.integers(0, 3),  # whose (an index into ACCOUNTS)
    st.sampled_from(SYMBOLS),
    st.sampled_from(("buy", "sell")),
    st.integers(1, 40),
    st.sampled_from(("market", "limit", "stop", "stop_limit")),
    price_cents,  # limit
    price_cents,  # stop
    st.sampled_from(("day", "gtc", "ioc", "fok")),
    st.none() | st.integers(0, 10**6),  # repeat an earlier client_order_id of the account
    st.booleans(),  # with the same terms
    waits,
)
# No explain phase: it traces every line (sys.settrace on Python 3.11), minutes for one failing example.
PHASES = tuple(
    p for p in Phase if p.name in os.environ.get("ENGINE_SIMULATION_PHASES", "explicit generate shrink").split()
)


class Crash(Exception):
    """The injected failure: the engine process dies here."""


class StreamModel:
    """One shard's stream as the engine sees it: unacknowledged entries (the first `delivered` of them read
    by an engine, its pending list), the committed checkpoint, and the engine's last prices."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.delivered = 0
        self.checkpoint = (0, 0)
        self.prices: dict[str, int] = {}
        self.own_pending = True

    def read(self, batch_max: int) -> list[tuple[str, dict[str, Any]]]:
        if self.own_pending and self.delivered:
            return self.entries[: min(batch_max, self.delivered)]
        self.own_pending = False
        batch = self.entries[self.delivered : self.delivered + batch_max]
        self.delivered += len(batch)
        return batch

    def acknowledge(self, count: int) -> None:
        del self.entries[:count]
        self.delivered -= count


class EngineSimulation(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.redis = redis_client()
        self.redis.flushdb()
        em.wipe()
        self.clock = CLOCK_START
        self.model = em.Model(day_ms=DAY_MS)
        self.streams = [StreamModel() for _ in range(SHARDS)]
        self.quotes: dict[str, int] = {}  # the latest staged quote per symbol (what a restart seeds)
        self.channel = key("sim-replies", uuid.uuid4().hex)
        self.pubsub = self.redis.pubsub()
        self.pubsub.subscribe(self.channel)
        self.pubsub.get_message(timeout=2.0)
        self.requests = 0
        self.callers: dict[str, ObjectId] = {}
        self.places: list[dict[str, Any]] = []  # every place sent (for repeats)
        self.closes = 0  # close commands sent (their client_order_ids: x1, x2, ...)
        self.expected: dict[str, em.Answer] = {}  # answers due from the step under way
        self.answered: dict[str, em.Answer] = {}
        self.acknowledged: dict[ObjectId, tuple[ObjectId, str]] = {}  # order id -> (account, client_order_id)
        self.starting: dict[ObjectId, tuple[int, dict[str, int]]] = {}
        self.engines: list[Engine] = []
        self.rules = 0

    # --- setup ---
    @initialize(
        cash=st.lists(st.integers(200, 3000).map(lambda d: d * 100), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)),
        shares=st.lists(st.integers(0, 40), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)),
    )
    def accounts(self, cash: list[int], shares: list[int]) -> None:
        for account, money, held in zip(ACCOUNTS, cash, shares, strict=True):
            em.account_insert(account, money, {"ACME": held})
            modelled = em.MAccount(account, money)
            if held:
                modelled.positions["ACME"] = em.MPosition(held, em.Decimal("10.0000"))
            self.model.accounts[account] = modelled
            self.starting[account] = (money, {"ACME": held} if held else {})
        self.tick({symbol: 1000 for symbol in SYMBOLS})  # quoted before the engines start (they seed from quotes)
        self.engines = [self._engine(shard) for shard in range(SHARDS)]

    def _engine(self, shard: int) -> Engine:
        engine = Engine(shard, client=self.redis, window_ms=0, day_ms=DAY_MS, now_ms=lambda: 0)
        engine.start()
        self.streams[shard].own_pending = True
        self.streams[shard].prices = dict(self.quotes)  # every_latest_price: the freshest staged quotes
        # The book is rebuilt in the order MongoDB returns open orders: that is their time priority now.
        mine = {o.id: o for o in self.model.open_orders(shard)}
        for document in em.collection(em.Order).find({"status": "open"}, {"_id": 1}):
            if document["_id"] in mine:
                mine[document["_id"]].rank = self.model.next_rank()
        return engine

    # --- appending commands ---
    def _append(self, shard: int, command: dict[str, Any], wait: int) -> str:
        self.clock += wait
        entry = f"{self.clock}-0"
        self.redis.xadd(order_stream.stream_key(shard), order_stream.encode(command), id=entry)  # type: ignore[arg-type]
        self.streams[shard].entries.append((entry, command))
        return entry

    def _caller(self, account: ObjectId) -> dict[str, str]:
        self.requests += 1
        self.callers[f"q{self.requests}"] = account
        return {
            "a": str(account),
            "u": str(ObjectId(b"user" + account.binary[4:])),
            "r": f"q{self.requests}",
            "to": self.channel,
        }

    @rule(orders=st.lists(order_asked, min_size=1, max_size=3))
    def place(self, orders: list[tuple[Any, ...]]) -> None:
        """A few orders; some repeat an earlier client_order_id (a retry with the same terms, or a conflict)."""
        for who, symbol, side, quantity, kind, limit, stop, time_in_force, repeat, same, wait in orders:
            account = ACCOUNTS[who]
            order = {
                "client_order_id": f"c{len(self.places)}",
                "symbol": symbol,
                "side": side,
                "quantity": quantity,
                "type": kind,
                "limit_cents": limit if kind in ("limit", "stop_limit") else None,
                "stop_cents": stop if kind in ("stop", "stop_limit") else None,
                "time_in_force": time_in_force,
            }
            earlier = [p for p in self.places if p["a"] == str(account)]
            if repeat is not None and earlier:
                original = earlier[repeat % len(earlier)]["o"]
                order = dict(original) if same else {**order, "client_order_id": original["client_order_id"]}
            command = {"k": "place", **self._caller(account), "o": order}
            self.places.append(command)
            self._append(order_stream.shard_of(account), command, wait)

    @rule(who=st.integers(0, len(ACCOUNTS) - 1), pick=st.integers(0, 10**6), unknown=st.integers(0, 7), wait=waits)
    def cancel(self, who: int, pick: int, unknown: int, wait: int) -> None:
        """Mostly an order the model knows (open or not, this account's or another's), now and then none."""
        account = ACCOUNTS[who]
        known = sorted(self.model.orders, key=str)
        order_id = ObjectId(f"{pick:024x}") if unknown == 0 or not known else known[pick % len(known)]
        command = {"k": "cancel", **self._caller(account), "id": str(order_id)}
        self._append(order_stream.shard_of(account), command, wait)

    @rule(who=st.integers(0, len(ACCOUNTS) - 1), symbol=st.none() | st.sampled_from(SYMBOLS), wait=waits)
    def cancel_all(self, who: int, symbol: str | None, wait: int) -> None:
        account = ACCOUNTS[who]
        command = {"k": "cancel_all", **self._caller(account), "symbol": symbol}
        self._append(order_stream.shard_of(account), command, wait)

    @rule(
        who=st.integers(0, len(ACCOUNTS) - 1),
        symbol=st.sampled_from(SYMBOLS),
        size=st.sampled_from(((None, None), (None, 50), (None, 1), (5, None), (None, 100))),
        cancel_orders=st.booleans(),
        repeat=st.booleans(),
        wait=waits,
    )
    def close(
        self, who: int, symbol: str, size: tuple[int | None, int | None], cancel_orders: bool, repeat: bool, wait: int
    ) -> None:
        """Close a position: all, 5 shares, 1 / 50 / 100 %; now and then with an earlier close's client_order_id."""
        account = ACCOUNTS[who]
        self.closes += 1
        client_order_id = f"x{self.closes - 1 if repeat and self.closes > 1 else self.closes}"
        quantity, percent = size
        command = {"k": "close", **self._caller(account), "client_order_id": client_order_id, "symbol": symbol}
        command |= {"quantity": quantity, "percent": percent, "cancel_orders": cancel_orders}
        self._append(order_stream.shard_of(account), command, wait)

    @rule(prices=st.dictionaries(st.sampled_from(SYMBOLS), price_cents, min_size=1))
    def tick(self, prices: dict[str, int]) -> None:
        ticks = [
            Tick(symbol=s, price=c / 100, previous_close=c / 100, volume=0, timestamp=0) for s, c in prices.items()
        ]
        pipe = self.redis.pipeline()
        stage_quotes(pipe, ticks)
        _, *entries = pipe.execute()
        assert len(entries) == SHARDS
        pairs = [[s, c] for s, c in prices.items()]
        for shard, entry in enumerate(entries):
            self.streams[shard].entries.append((entry.decode(), {"k": "ticks", "p": pairs}))
        self.quotes.update(prices)

    @rule(shard=st.integers(0, SHARDS - 1), wait=waits)
    def expire(self, shard: int, wait: int) -> None:
        self._append(shard, {"k": "expire", "now": self.clock + wait}, wait)

    # --- the engine's steps ---
    @rule(
        shard=st.integers(0, SHARDS - 1),
        batch_max=st.integers(1, 8),
        crash=st.sampled_from((None, None, None, "before_commit", "after_commit", "between_batches")),
    )
    def step(self, shard: int, batch_max: int, crash: str | None) -> None:
        """One batch of up to batch_max entries; or the engine dies in it (or between two) and another starts."""
        if crash == "between_batches":
            STEPS["crash between_batches"] += 1
            self.engines[shard] = self._engine(shard)
            self._check()
            return
        self._step(shard, batch_max, crash=crash)

    def _step(self, shard: int, batch_max: int, *, crash: str | None) -> None:
        STEPS["steps"] += 1
        if crash is not None:
            STEPS[f"crash {crash}"] += 1
        stream, engine, model = self.streams[shard], self.engines[shard], self.model
        before = copy.deepcopy((model.accounts, model.orders, model._ranks, stream.prices))
        batch = stream.read(batch_max)
        STEPS["entries read"] += len(batch)
        fresh = [(e, c) for e, c in batch if entry_position(e) > stream.checkpoint]
        committed = [(e, c) for e, c in batch if entry_position(e) <= stream.checkpoint]
        model.wrote = False
        answers: dict[str, em.Answer] = {}
        for entry, command in fresh:
            if (answer := model.decide(shard, stream.prices, entry, command)) is not None:
                answers[command["r"]] = answer
        for entry, command in committed:
            if (answer := model.answer_committed(shard, entry, command)) is not None:
                answers[command["r"]] = answer
        commits = bool(fresh) and model.wrote
        calls = {"commit": 0}
        real_commit = journal.commit

        def commit(*args: Any, **kwargs: Any) -> None:
            calls["commit"] += 1
            if crash == "before_commit":
                raise Crash("before the commit")
            real_commit(*args, **kwargs)

        def publish(*args: Any, **kwargs: Any) -> None:
            raise Crash("after the commit")

        engine.batch_max = batch_max
        crashed = False
        with contextlib.ExitStack() as patches:
            patches.enter_context(mock.patch.object(journal, "commit", commit))
            if crash == "after_commit":
                patches.enter_context(mock.patch.object(runner, "publish", publish))
            try:
                read = engine.step(block_ms=None)  # type: ignore[arg-type]  # no wait: the model knows what is there
            except Crash:
                crashed = True
                read = len(batch)
        assert read == len(batch), f"the engine read {read} entries, the model {len(batch)}"
        assert calls["commit"] == int(commits), f"the engine committed {calls['commit']}x, the model {int(commits)}x"
        if crashed:
            if crash == "before_commit" or not commits:  # nothing written: as if the batch was never read
                model.accounts, model.orders, model._ranks, stream.prices = before
            elif commits:
                stream.checkpoint = entry_position(fresh[-1][0])
            self.engines[shard] = self._engine(shard)
        else:
            if commits:
                stream.checkpoint = entry_position(fresh[-1][0])
            stream.acknowledge(len(batch))
            self.expected = answers
            self._collect_answers()
        if batch:  # an empty read changes nothing
            self._check()

    # --- checking ---
    @invariant()
    def count(self) -> None:
        self.rules += 1

    def _collect_answers(self) -> None:
        deadline = time.monotonic() + 5
        while self.expected and time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if message is None or message.get("type") != "message":
                continue
            answer = json.loads(message["data"])
            request = answer["r"]
            assert request not in self.answered, f"{request} answered twice"
            assert request in self.expected, f"an answer nobody expected now: {answer}"
            status, order_id = self.expected.pop(request)
            got = (int(answer["s"]), ObjectId(answer["order"]["id"]) if "order" in answer else None)
            assert got == (status, order_id), f"{request}: the engine answered {answer}, the model {status} {order_id}"
            self.answered[request] = got
            STEPS[f"answer {status}"] += 1
            if status in (200, 201) and order_id is not None:
                self.acknowledged[order_id] = (self.callers[request], answer["order"]["client_order_id"])
        assert not self.expected, f"answers never came: {self.expected}"
        assert self.pubsub.get_message(timeout=0) is None, "an answer nobody expected"

    def _check(self) -> None:
        state = em.stored()
        accounts, holdings, orders, invoices = self.model.expected()
        assert state.accounts == accounts
        assert state.holdings == holdings
        for order_id in set(state.orders) | set(orders):
            assert state.orders.get(order_id) == orders.get(order_id), f"order {order_id}"
        assert state.invoices == invoices
        assert em.conservation_problems(state, self.starting) == []
        for order_id, (account, client_order_id) in self.acknowledged.items():
            stored = state.orders.get(order_id)
            assert stored is not None and (stored["account"], stored["client_order_id"]) == (
                account,
                client_order_id,
            ), f"acknowledged order {order_id} lost"

    def teardown(self) -> None:
        try:
            if self.engines:
                for shard in range(SHARDS):
                    while self.streams[shard].entries:
                        self._step(shard, 50, crash=None)
        finally:
            self.pubsub.close()
        for order in self.model.orders.values():
            STEPS[f"order {order.type} {order.status}"] += 1
        STEPS["examples"] += 1
        STEPS["rules"] += self.rules


@pytest.mark.django_db(transaction=True)
def test_the_engine_commits_what_a_serial_model_decides_through_crashes_and_batches(db: None) -> None:
    """Feature: trading-performance-optimization, Property 38: Data integrity preservation — the committed
    state equals a serial model's after every step of random orders, ticks, expiries, batch boundaries and
    crashes; money and shares are conserved; nothing acknowledged is lost (Property 36); no order is made
    twice (Property 35)."""
    list_symbols(*SYMBOLS)
    STEPS.clear()
    started = time.monotonic()
    run_state_machine_as_test(
        EngineSimulation,
        settings=settings(
            max_examples=int(os.environ.get("ENGINE_SIMULATION_EXAMPLES", "100")),  # more for a soak
            stateful_step_count=30,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=PHASES,
        ),
    )
    print(f"\nengine simulation: {time.monotonic() - started:.1f} s, {dict(sorted(STEPS.items()))}")
