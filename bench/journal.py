"""What the order engine's commit costs the database, per order and per batch (issue 26's CPU per order).

The real rules (`rules.decide`) decide market buys of one share for 300 accounts round robin against the
engine's in-memory state, and the real journal (`journal.commit`) writes each batch in its one
transaction, on the embedded SecantusDB of `make bench`; nothing else runs. CPU: the database process'
(psutil) and this process' (the engine's side: the rules, the writes' encoding, the driver) per order.
Baseline in the same run: transactions that write only the shard's checkpoint, i.e. what a batch costs
whatever it holds. Batches of 1, 4 and 16 orders show how group commit amortises that floor; what is
left per order is the documents and their index entries (order, invoice, account, holding).

No target of its own: bench/orders.py holds issue 26's CPU-per-order target on the full stack, where
the rate decides the batch sizes; this bench isolates the database's share from the rest of the stack.

    python -m bench journal [--quick]
"""

from __future__ import annotations

import os
import time

import psutil

from bench.common import cpu_seconds, listening_process, progress, setup_django, table

ACCOUNTS = 300
BATCH_SIZES = (1, 4, 16)
SYMBOL = "JRNL"
PRICE_CENTS = 10_000


def _database() -> psutil.Process:
    from django.conf import settings

    process = listening_process(settings.DATABASES["default"]["HOST"])
    if process is None:
        raise SystemExit("journal bench: the database is not a local process (run it through `make bench`)")
    return process


class Journal:
    """The engine's state for ACCOUNTS fresh accounts, and batches of market buys committed as the engine does."""

    def __init__(self) -> None:
        from bson import ObjectId

        from apps.portfolio.engine import journal
        from apps.portfolio.engine.state import EngineState

        self.journal = journal
        for _ in range(ACCOUNTS):
            journal.account_insert(user_id=ObjectId(), cash=journal.Decimal("1000000.00"))
        self.session = journal.open_session()
        self.checkpoint = journal.claim(0, self.session)
        self.state = EngineState(0)
        self.state.accounts = journal.load_shard_accounts(lambda _: 0, 0)
        self.state.prices[SYMBOL] = PRICE_CENTS
        self.accounts = list(self.state.accounts.values())
        self.sequence = int(time.time() * 1000)
        self.placed = 0

    def _entry(self) -> str:
        self.sequence += 1
        return f"{self.sequence}-0"

    def commit(self, orders: int) -> None:
        """One batch of `orders` market buys (0: the checkpoint alone), decided and committed."""
        from apps.portfolio.engine.commands import Caller, Place
        from apps.portfolio.engine.effects import Effects
        from apps.portfolio.engine.rules import decide
        from apps.portfolio.engine.runner import sign_fill

        effects = Effects()
        entry = self._entry()
        for _ in range(orders):
            entry = self._entry()
            account = self.accounts[self.placed % len(self.accounts)]
            self.placed += 1
            caller = Caller(account.id, account.user_id, f"r{self.placed}", "bench")
            place = Place(caller, f"j{self.placed}", SYMBOL, "buy", 1)
            effects.at_ms = self.sequence
            decide(self.state, place, effects, at_ms=self.sequence, entry=entry, sign=sign_fill, day_ms=86_400_000)
        effects.at_ms = self.sequence
        epoch = self.checkpoint.epoch
        self.journal.commit(effects, session=self.session, shard=0, epoch=epoch, last_entry=entry)


def _measure(journal: Journal, database: psutil.Process, batch: int, orders: int) -> dict[str, float]:
    me = psutil.Process(os.getpid())
    batches = max(1, orders // max(batch, 1))
    db_before, me_before, started = cpu_seconds(database), cpu_seconds(me), time.perf_counter()
    for _ in range(batches):
        journal.commit(batch)
    wall = time.perf_counter() - started
    per = batches * max(batch, 1)
    return {
        "batches": batches,
        "database": (cpu_seconds(database) - db_before) / per * 1000,
        "engine": (cpu_seconds(me) - me_before) / per * 1000,
        "wall": wall / per * 1000,
    }


def run(quick: bool) -> str:
    setup_django()
    database = _database()
    journal = Journal()
    orders = 400 if quick else 2000
    progress(f"journal: warming up ({ACCOUNTS} accounts, one holding each)")
    for _ in range(ACCOUNTS):
        journal.commit(1)
    results: list[tuple[str, dict[str, float]]] = []
    progress("journal: checkpoint-only transactions (the baseline)")
    floor = _measure(journal, database, 0, orders // 4)
    results.append(("checkpoint only (per batch)", floor))
    for batch in BATCH_SIZES:
        progress(f"journal: batches of {batch}")
        results.append((f"{batch} order{'s' if batch > 1 else ''} a batch", _measure(journal, database, batch, orders)))
    rows = [
        [label, f"{r['batches']:.0f}", f"{r['database']:.2f}", f"{r['engine']:.2f}", f"{r['wall']:.2f}"]
        for label, r in results
    ]
    one = results[1][1]["database"]
    per_document = results[-1][1]["database"] - floor["database"] / BATCH_SIZES[-1]
    return "\n".join(
        [
            "## The engine's commit on the embedded database (`bench/journal.py`, issue 26)",
            "",
            (
                f"The real rules and journal, nothing else running: market buys of one share for {ACCOUNTS} "
                "accounts round robin, each batch one transaction (order, invoice, account and holding "
                "writes with the shard's checkpoint). CPU in ms per order (per batch for the baseline): "
                "the database process and the engine's side (this process)."
            ),
            "",
            table(["batch", "batches", "database CPU ms", "engine CPU ms", "wall ms"], rows),
            "",
            (
                f"A transaction costs the database {floor['database']:.2f} ms whatever it holds; an order alone "
                f"in its batch {one:.2f} ms, in batches of {BATCH_SIZES[-1]} {results[-1][1]['database']:.2f} ms, "
                f"of which {per_document:.2f} ms are its four documents and their index entries."
            ),
        ]
    )
