"""kill -9 of a real engine process mid-run (Property 36: crash recovery; Property 35: exactly-once orders).

Each shard's engine runs as `manage.py run_engine --shard K`, as the Procfile starts it. Threads place
orders through services.place_order and retry every 503 (no answer in time: the engine is down) with the
same client_order_id, as a client must. While they do, each engine in turn is killed with SIGKILL (in the
middle of whatever batch it was reading, deciding or committing) and started again. Afterwards: every
acknowledged order is stored, no client_order_id made two orders, cash and shares are exact, and each
restarted engine answered again within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

from apps.core import order_stream
from apps.core.redis import redis_client
from apps.portfolio.engine.runner import heartbeat_key
from apps.portfolio.models import Trader
from apps.portfolio.services import OrderRejected, place_order, trader_create
from tests.conftest import BASE_DIR, service_env
from tests.portfolio import engine_model as em
from tests.portfolio.conftest import list_symbols, set_quotes
from tests.wait import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TRADERS_PER_SHARD = 2
STARTING_CASH = Decimal("100000.00")
PRICE = Decimal("10.00")
SERVING_AGAIN_WITHIN = 15.0  # seconds; the design's target is 5 (printed)


class Engines:
    """One `run_engine` process per shard, its output in a file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.starts = 0

    def start(self, shard: int) -> None:
        self.starts += 1
        log = (self.folder / f"engine-{shard}-{self.starts}.log").open("wb")
        self.processes[shard] = subprocess.Popen(
            [sys.executable, "manage.py", "run_engine", "--shard", str(shard)],
            cwd=BASE_DIR,
            env=service_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, shard: int) -> None:
        process = self.processes[shard]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.folder.glob("engine-*.log")))


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Engines]:
    running = Engines(tmp_path)
    yield running
    running.stop_all()


class Placer(threading.Thread):
    """Places market buys for its trader until told to stop; retries a 503 with the same client_order_id."""

    def __init__(self, trader: Trader, number: int, stopping: threading.Event) -> None:
        super().__init__(name=f"placer-{number}", daemon=True)
        self.trader, self.number, self.stopping = trader, number, stopping
        self.shard = order_stream.shard_of(trader.pk)
        self.acknowledged: dict[str, tuple[object, int, float]] = {}  # client_order_id -> (order id, status, when)
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            sent = 0
            while not self.stopping.is_set():
                sent += 1
                client_order_id = f"t{self.number}-{sent}"
                quantity = 1 + sent % 3
                while True:  # until the engine answers: a client that never gives up on an order it sent
                    try:
                        result = place_order(
                            trader=self.trader,
                            symbol="ACME",
                            side="buy",
                            quantity=quantity,
                            client_order_id=client_order_id,
                        )
                    except OrderRejected as refused:
                        if refused.status != 503:
                            raise
                        self.retries += 1
                        continue
                    status = 201 if result.created else 200
                    self.acknowledged[client_order_id] = (result.order.pk, status, time.monotonic())
                    break
        except BaseException as error:
            self.error = error
        finally:
            connection.close()
            connections["market"].close()

    def acknowledged_since(self, moment: float) -> bool:
        return any(when > moment for _, _, when in list(self.acknowledged.values()))


def acknowledged(placers: list[Placer]) -> int:
    return sum(len(p.acknowledged) for p in placers)


def kill_and_restart(engines: Engines, shard: int, mine: list[Placer]) -> float:
    """kill -9 the shard's engine while its placers send, start another; seconds until an order is answered."""
    before = acknowledged(mine)
    wait_until(lambda: acknowledged(mine) >= before + 20, timeout=60, what=f"orders on shard {shard}", poll=0.005)
    engines.kill(shard)
    killed = time.monotonic()
    engines.start(shard)
    serving = wait_until(
        lambda: any(p.acknowledged_since(killed) for p in mine), timeout=60, what=f"shard {shard} serving again"
    )
    wait_until(lambda: acknowledged(mine) >= before + 40, timeout=60, what=f"orders on shard {shard} after restart")
    return serving


def test_a_killed_engine_loses_no_acknowledged_order_and_doubles_none(engines: Engines, settings: Any) -> None:
    settings.ENGINE_REPLY_TIMEOUT_SECONDS = 1.0  # a request in flight while its engine is down gives up: 503, retry
    list_symbols("ACME")
    set_quotes({"ACME": PRICE})
    traders: list[Trader] = []
    number = 0
    while min(sum(order_stream.shard_of(t.pk) == s for t in traders) for s in range(order_stream.shards())) < (
        TRADERS_PER_SHARD
    ):
        number += 1
        trader, _ = trader_create(username=f"kill-{number}", cash=STARTING_CASH)
        if sum(order_stream.shard_of(t.pk) == order_stream.shard_of(trader.pk) for t in traders) < TRADERS_PER_SHARD:
            traders.append(trader)
    shards = range(order_stream.shards())
    for shard in shards:
        engines.start(shard)
    client = redis_client()
    wait_until(lambda: all(client.exists(heartbeat_key(s)) for s in shards), timeout=60, what="every engine up")

    stopping = threading.Event()
    placers = [Placer(trader, n, stopping) for n, trader in enumerate(traders)]
    for placer in placers:
        placer.start()
    recoveries: dict[int, float] = {}
    try:
        for shard in shards:
            recoveries[shard] = kill_and_restart(engines, shard, [p for p in placers if p.shard == shard])
    finally:
        stopping.set()
        for placer in placers:
            placer.join(timeout=60)
    errors = [p.error for p in placers if p.error is not None]
    assert not errors, f"{errors}\n{engines.logs()}"
    assert not any(p.is_alive() for p in placers), "a placer never got its last answer"

    state = em.stored()
    starting = {t.pk: (int(STARTING_CASH * 100), {}) for t in traders}
    problems = em.conservation_problems(state, starting)
    lost = [
        (p.trader.pk, cid, order_id)
        for p in placers
        for cid, (order_id, _, _) in p.acknowledged.items()
        if state.orders.get(order_id, {}).get("client_order_id") != cid
        or state.orders[order_id]["account"] != p.trader.pk
    ]
    acknowledged = {(p.trader.pk, cid) for p in placers for cid in p.acknowledged}
    stored_orders = {(o["account"], o["client_order_id"]) for o in state.orders.values()}
    orders = sum(len(p.acknowledged) for p in placers)
    print(
        f"\n{orders} orders acknowledged, {sum(p.retries for p in placers)} retries after 503; serving again "
        + ", ".join(f"shard {s} {seconds:.2f} s after kill -9" for s, seconds in recoveries.items())
    )
    assert lost == [], "acknowledged orders lost"
    assert problems == [], problems
    assert stored_orders == acknowledged, "an order stored that nobody was told of, or one acknowledged and missing"
    assert all(o["status"] == "filled" for o in state.orders.values())
    for trader in traders:  # cash exact: the starting cash less 10.00 a share bought
        bought = sum(o["quantity"] for o in state.orders.values() if o["account"] == trader.pk)
        assert state.accounts[trader.pk][0] == int(STARTING_CASH * 100) - bought * int(PRICE * 100)
    assert all(seconds < SERVING_AGAIN_WITHIN for seconds in recoveries.values()), recoveries


@pytest.mark.timeout(60)  # without the fix the claim waits behind the open transaction
def test_a_transaction_a_killed_engine_left_open_is_aborted_by_the_next_claim_of_its_shard(db: None) -> None:
    """kill -9 between a batch's writes and its commit leaves the transaction open on the server, holding the
    shard's documents for up to a minute (transactionLifetimeLimitSeconds). The next engine's claim kills the
    dead engine's session first: it takes the shard at once, and the abandoned writes never land."""
    from pymongo import UpdateOne
    from pymongo.errors import OperationFailure

    from apps.portfolio.engine import journal
    from apps.portfolio.engine.runner import Engine
    from apps.portfolio.models import EngineShard

    dead = Engine(0, client=redis_client(), window_ms=0)
    dead.start()
    assert dead.session is not None
    abandoned = dead.session  # the batch in flight when the process died: written, never committed
    abandoned.start_transaction()
    stray = UpdateOne(
        {"shard": 0}, {"$set": {"last_entry": "9999999999999-0"}}, namespace=journal._namespaced(EngineShard)
    )
    journal._write_all([(EngineShard, stray)], abandoned)

    restarted = Engine(0, client=redis_client(), window_ms=0)
    restarted.start()  # without the kill: a write conflict with the open transaction, for up to a minute
    shard = EngineShard.objects.get(shard=0)
    assert (shard.epoch, shard.last_entry) == (2, "0-0")
    with pytest.raises(OperationFailure):
        abandoned.commit_transaction()  # it was aborted by the claim
    assert EngineShard.objects.get(shard=0).last_entry == "0-0"
