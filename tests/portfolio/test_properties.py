"""Hypothesis properties of trading: batching (2), non-blocking invoices (10), rate limits (12), exactly-once
orders (35) and data integrity (38). Database properties run on the real embedded MongoDB (deadline=None)
and place orders through the real order engine (apps/portfolio/engine/); each example uses a fresh trader
so examples never see each other."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import InsertOne
from pymongo.errors import OperationFailure

from apps.core import order_stream
from apps.core.ratelimit import ApiRateLimitMiddleware
from apps.core.redis import redis_client
from apps.portfolio import services
from apps.portfolio.engine import journal, runner
from apps.portfolio.engine.client import caller_for
from apps.portfolio.engine.commands import Place, as_fields
from apps.portfolio.engine.rules import AVERAGE_COST_STEP
from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.selectors import portfolio_values
from apps.portfolio.services import CENT, OrderRejected, invoice_pdf, place_order, trader_create
from tests.portfolio.conftest import MONGO_COMMANDS, list_symbols, set_quotes

DB_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
POOL = [f"S{n:03d}" for n in range(60)]
prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999.99"), places=2)


@pytest.fixture
def listed_pool(db: None) -> list[str]:
    list_symbols(*POOL)
    return POOL


@DB_SETTINGS
@given(
    holdings_per_trader=st.lists(
        st.dictionaries(st.sampled_from(POOL), st.integers(1, 10_000), max_size=25), min_size=1, max_size=4
    ),
    quoted=st.dictionaries(st.sampled_from(POOL), prices, max_size=60),
)
def test_property_2_valuing_any_number_of_portfolios_costs_constant_round_trips(
    listed_pool, make_trader, round_trips, holdings_per_trader, quoted
) -> None:
    """Feature: trading-performance-optimization, Property 2: For any collection of user data requests, the database
    layer should execute a constant number of queries regardless of the collection size."""
    redis_client().flushdb()  # quotes of earlier examples must not leak into this one
    set_quotes(quoted)
    traders = [make_trader("500.00")[0] for _ in holdings_per_trader]
    Holding.objects.bulk_create(
        Holding(trader=t, symbol=s, quantity=q, average_cost=Decimal("7.5000"))
        for t, held in zip(traders, holdings_per_trader, strict=True)
        for s, q in held.items()
    )
    counted = round_trips()
    values = portfolio_values([t.pk for t in traders])
    assert MONGO_COMMANDS.commands == ["find", "find", "find"]  # traders, their users, all holdings
    assert counted.redis_calls == (1 if any(holdings_per_trader) else 0)  # every price in one MGET
    for trader, held in zip(traders, holdings_per_trader, strict=True):
        expected = sum(
            ((Decimal(quoted[s]) if s in quoted else Decimal("7.5000")) * q).quantize(CENT) for s, q in held.items()
        )
        assert values[trader.pk].total_value == Decimal("500.00") + expected


order_requests = st.lists(
    st.tuples(st.sampled_from(["id-a", "id-b", "id-c"]), st.sampled_from(["ACME", "BOLT"]), st.integers(1, 3)),
    min_size=1,
    max_size=10,
)


@DB_SETTINGS
@given(requests=order_requests)
def test_property_35_each_client_order_id_executes_exactly_once(market, make_trader, requests) -> None:
    """Feature: trading-performance-optimization, Property 35: For any critical background job, the system should
    ensure it is processed exactly once."""
    trader, _ = make_trader("100000.00")
    first: dict[str, tuple[str, int, Any]] = {}
    for client_order_id, symbol, quantity in requests:
        try:
            result = place_order(
                trader=trader, symbol=symbol, side="buy", quantity=quantity, client_order_id=client_order_id
            )
        except OrderRejected as rejection:
            assert client_order_id in first and first[client_order_id][:2] != (symbol, quantity)
            assert (rejection.code, rejection.status) == ("client_order_id_conflict", 409)
            continue
        if client_order_id in first:
            assert not result.created and result.order.pk == first[client_order_id][2]
            assert first[client_order_id][:2] == (symbol, quantity)
        else:
            assert result.created
            first[client_order_id] = (symbol, quantity, result.order.pk)
    assert Order.objects.filter(trader=trader).count() == len(first)
    assert sorted(Invoice.objects.filter(trader=trader).values_list("order_id", flat=True)) == sorted(
        pk for _, _, pk in first.values()
    )
    spent = sum(Decimal("10.00" if s == "ACME" else "25.50") * q for s, q, _ in first.values())
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("100000.00") - spent


class CommitFailed(OperationFailure):
    """The batch's transaction fails half-way (after the trade and its invoice are written, before the account)."""


@pytest.fixture
def failing_commits(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """`left` next commits of the engine fail half-way through their transaction (MongoDB aborts it)."""
    failures = {"left": 0}
    write_all = journal._write_all

    def write_then_fail(writes: list[tuple[Any, Any]], session: Any) -> int:
        matched = write_all(writes, session)
        if failures["left"] > 0 and any(model is Order and isinstance(w, InsertOne) for model, w in writes):
            failures["left"] -= 1
            raise CommitFailed("injected failure after the batch's writes")
        return matched

    monkeypatch.setattr(journal, "_write_all", write_then_fail)
    return failures


operations = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(["ACME", "BOLT"]),
        st.integers(1, 60),
        prices,
        st.booleans(),  # the engine's commit fails half-way (after the trade is written) and is done again
    ),
    min_size=1,
    max_size=8,
)


@DB_SETTINGS
@given(cash=st.decimals(min_value=0, max_value=5000, places=2), ops=operations)
def test_property_38_cash_holdings_trades_and_invoices_always_agree(
    market, make_trader, failing_commits, cash, ops
) -> None:
    """Feature: trading-performance-optimization, Property 38: For any performance optimization implementation, data
    accuracy should be maintained.

    Each order goes through the real engine; a commit that fails half-way leaves nothing of its batch (one
    transaction), and the engine, reloading from MongoDB, decides the order again: it executes once."""
    trader, _ = make_trader(cash)
    expected_cash = cash
    held: dict[str, tuple[int, Decimal]] = {}
    filled = 0
    for side, symbol, quantity, price, fails in ops:
        set_quotes({symbol: price})
        amount = (price * quantity).quantize(CENT)
        owned, average = held.get(symbol, (0, Decimal(0)))
        failing_commits["left"] = 1 if fails else 0
        try:
            place_order(trader=trader, symbol=symbol, side=side, quantity=quantity)
        except OrderRejected as rejection:
            expected = "insufficient_cash" if side == "buy" else "insufficient_holding"
            assert rejection.code == expected
            assert (amount > expected_cash) if side == "buy" else (quantity > owned)
        else:
            filled += 1
            if side == "buy":
                expected_cash -= amount
                cost = (average * owned + amount) / (owned + quantity)
                held[symbol] = (owned + quantity, cost.quantize(AVERAGE_COST_STEP))
            else:
                expected_cash += amount
                held[symbol] = (owned - quantity, average)
        account = Trader.objects.get(pk=trader.pk)
        assert account.cash == expected_cash and account.cash >= 0
        stored = {h.symbol: (h.quantity, h.average_cost) for h in Holding.objects.filter(trader=trader)}
        assert stored == {s: v for s, v in held.items() if v[0] > 0}
        assert Order.objects.filter(trader=trader).count() == filled
        numbers = sorted(Invoice.objects.filter(trader=trader).values_list("number", flat=True))
        assert numbers == list(range(1, filled + 1))


@DB_SETTINGS
@given(orders=st.lists(st.tuples(st.sampled_from(["ACME", "BOLT", "NOPE", "HALT"]), st.integers(0, 200)), max_size=6))
def test_property_10_orders_never_wait_for_their_invoice(market, make_trader, monkeypatch, orders) -> None:
    """Feature: trading-performance-optimization, Property 10: For any invoice generation request, trade operations
    should continue without blocking.

    Placing orders renders no PDF (the engine writes each invoice pending with its code); and while a first
    download's render is held, the trader's orders are all decided and answered."""
    from apps.portfolio import invoices

    trader, _ = make_trader("1000.00")
    held_trade = place_order(trader=trader, symbol="ACME", side="buy", quantity=1).order
    rendering, release = threading.Event(), threading.Event()

    def held_render(invoice: Invoice) -> bytes:
        rendering.set()
        release.wait(timeout=30)
        return b"%PDF-1.4 held"

    def never_for_an_order(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("a PDF was rendered for an order")

    monkeypatch.setattr(services, "render_invoice_pdf", held_render)
    monkeypatch.setattr(invoices, "render_invoice_pdf", never_for_an_order)

    def download() -> bytes:
        try:
            return invoice_pdf(Invoice.objects.get(order=held_trade))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        downloading = pool.submit(download)
        try:
            assert rendering.wait(timeout=10)
            monkeypatch.setattr(services, "render_invoice_pdf", never_for_an_order)
            for symbol, quantity in orders:
                try:
                    result = place_order(trader=trader, symbol=symbol, side="buy", quantity=quantity)
                except OrderRejected:
                    continue
                invoice = Invoice.objects.get(order=result.order)
                assert (invoice.status, invoice.pdf) == (Invoice.Status.PENDING, None)  # answered without a PDF
                assert invoice.verification_code
            assert not downloading.done()  # every order above was answered while the render was held
        finally:
            release.set()
        assert downloading.result(timeout=10) == b"%PDF-1.4 held"


def _ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@pytest.fixture
def three_tokens(make_trader) -> list[str]:
    """Three traders' API tokens, made once for all the examples of a test."""
    return [make_trader()[1] for _ in range(3)]


RATE_LIMIT_EPOCH = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)  # on a minute boundary: window n is minute n
request_bursts = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2), st.floats(0, 59.99), st.integers(1, 60)), max_size=6
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(90, 110), at=st.floats(0, 59.99), bursts=request_bursts)
def test_property_12_no_trader_gets_more_than_100_requests_a_minute(three_tokens, first, at, bursts) -> None:
    """Feature: trading-performance-optimization, Property 12: For any user, the API gateway should reject requests
    that exceed 100 requests per minute.

    The real middleware at the real limit (100/m, settings' production default), each trader by bearer token
    (their cached token context, as in production), the Redis counter, and a fake clock: bursts of requests by
    three traders at generated moments over three minutes, one of them from 90 to 110 requests at once."""
    from django.conf import settings as django_settings

    tokens = three_tokens
    for stale in redis_client().scan_iter(match="*rl:*"):
        redis_client().delete(stale)
    middleware = ApiRateLimitMiddleware(_ok)
    factory = RequestFactory()
    schedule = sorted([(0, at, 0, first), *((minute, second, who, n) for who, minute, second, n in bursts)])
    seen: dict[tuple[int, int], int] = {}  # (trader, minute) -> requests so far: the model
    original = django_settings.API_RATE_LIMIT
    django_settings.API_RATE_LIMIT = "100/m"
    try:
        with time_machine.travel(RATE_LIMIT_EPOCH, tick=False) as clock:
            for minute, second, who, count in schedule:
                clock.move_to(RATE_LIMIT_EPOCH + timedelta(seconds=minute * 60 + second))
                for _ in range(count):
                    request = factory.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {tokens[who]}")
                    request.user = _Anonymous()
                    response = middleware(request)
                    seen[who, minute] = seen.get((who, minute), 0) + 1
                    assert response.status_code == (200 if seen[who, minute] <= 100 else 429)
                    assert response["X-RateLimit-Limit"] == "100"
                    assert int(response["X-RateLimit-Remaining"]) == max(0, 100 - seen[who, minute])
                    if response.status_code == 429:
                        assert int(response["Retry-After"]) == max(1, math.ceil(60 - second))
    finally:
        django_settings.API_RATE_LIMIT = original


class _Anonymous:
    is_authenticated = False
    pk = None


# --- Property 35 on the engine: a crash between commit and acknowledgement ------------------------------


class EngineKilled(BaseException):
    """The engine's process dies here: nothing after this point of the batch runs."""


@pytest.fixture
def crashing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Crash points armed for the next batches, in order: `before_commit` (nothing written) or `after_commit`
    (the batch committed; its answers and acknowledgement never sent)."""
    armed: list[str] = []
    commit = journal.commit

    def commit_or_crash(*args: Any, **kwargs: Any) -> None:
        if armed and armed[0] == "before_commit":
            raise EngineKilled(armed.pop(0))
        commit(*args, **kwargs)
        if armed and armed[0] == "after_commit":
            raise EngineKilled(armed.pop(0))

    monkeypatch.setattr(journal, "commit", commit_or_crash)
    return armed


def drain(engine: runner.Engine) -> None:
    while engine.step(block_ms=1):
        pass


def expected_answers(requests: list[tuple[str, int]], cash: int, *, committed_before_answering: bool) -> list[Any]:
    """What one uncrashed engine answers each buy of ACME (10.00): (status, code or filled quantity)."""
    first: dict[str, int] = {}
    answers: list[Any] = []
    for client_order_id, quantity in requests:
        if client_order_id in first:
            same = first[client_order_id] == quantity
            answers.append((200, quantity) if same else (409, "client_order_id_conflict"))
        elif quantity * 1000 > cash:
            # refused, nothing written; re-read after a commit its first answer may be lost: "check, retry"
            answers.append((503, "engine_restarted") if committed_before_answering else (409, "insufficient_cash"))
        else:
            first[client_order_id] = quantity
            cash -= quantity * 1000
            answers.append((201, quantity))
    return answers


engine_requests = st.lists(
    st.tuples(st.sampled_from(["id-a", "id-b", "id-c", "id-d"]), st.integers(1, 4)), min_size=1, max_size=6
)


@DB_SETTINGS
@given(
    requests=engine_requests,
    killed=st.tuples(st.integers(0, 2), st.booleans()),
)
def test_property_35_a_command_re_read_after_a_crash_is_applied_once(market, crashing, requests, killed) -> None:
    """Feature: trading-performance-optimization, Property 35: For any critical background job, the system should
    ensure it is processed exactly once

    Buys of one trader with 50.00 (some repeating a client_order_id with the same or other terms, some
    unaffordable) reach the real engine (apps/portfolio/engine/runner.Engine) in one batch; the engine is
    killed before its commit or between commit and acknowledgement, once or several times, and each time a
    fresh engine on the same shard re-reads the unacknowledged entries. Every caller gets one answer, the
    one an uncrashed engine gives (a refusal re-read after its batch committed says "check, then retry"),
    and orders, invoices and cash are those of one run: nothing is applied twice.

    (Kills before the commit come first: once the batch committed, its re-reading commits nothing more.)"""
    crashes = ["before_commit"] * killed[0] + (["after_commit"] if killed[1] else [])
    trader, _ = trader_create(username=f"p35-{uuid.uuid4().hex[:12]}", cash=Decimal("50.00"))
    shard = order_stream.shard_of(trader.pk)
    client = redis_client()
    engine = runner.Engine(shard, client=client, window_ms=0)
    engine.start()
    drain(engine)  # the market's ticks
    crashing[:] = []
    replies = client.pubsub()
    channel = f"p35-replies-{uuid.uuid4().hex}"
    replies.subscribe(channel)
    assert replies.get_message(timeout=5)  # subscribed: every answer from here on reaches us
    sent = []
    for client_order_id, quantity in requests:
        caller = caller_for(account_id=trader.pk, user_id=trader.user_id, reply_to=channel)
        command = Place(caller=caller, client_order_id=client_order_id, symbol="ACME", side="buy", quantity=quantity)
        client.xadd(order_stream.stream_key(shard), order_stream.encode(as_fields(command)))
        sent.append(caller.request_id)
    crashing.extend(crashes)
    restarts = 0
    while True:
        try:
            drain(engine)
            break
        except EngineKilled:
            restarts += 1
            engine = runner.Engine(shard, client=client, window_ms=0)  # the restarted process, same consumer
            engine.start()
    assert restarts == len(crashes) and crashing == []
    # The engines published every answer before drain() returned, and Redis delivers a channel's messages in
    # the order it ran the PUBLISHes: once our own last one arrives, nothing more is on its way.
    client.publish(channel, json.dumps({"r": "end"}))
    answers: dict[str, list[dict[str, Any]]] = {}
    while True:
        message = replies.get_message(timeout=5)
        assert message is not None, "the end marker never arrived"
        if message["type"] != "message":
            continue
        answer = json.loads(message["data"])
        if answer["r"] == "end":
            break
        answers.setdefault(answer["r"], []).append(answer)
    replies.close()
    assert all(len(answers.get(r, [])) == 1 for r in sent), answers  # each caller answered once
    shown = [answers[r][0] for r in sent]
    got = [(a["s"], a["order"]["quantity"] if "order" in a else a["code"]) for a in shown]
    assert got == expected_answers(requests, 5000, committed_before_answering="after_commit" in crashes)
    filled = {}
    for (client_order_id, _), (status, quantity) in zip(requests, got, strict=True):
        if status == 201:
            filled[client_order_id] = quantity
    stored = {o.client_order_id: (o.quantity, o.status) for o in Order.objects.filter(trader=trader)}
    assert stored == {cid: (quantity, "filled") for cid, quantity in filled.items()}
    assert sorted(Invoice.objects.filter(trader=trader).values_list("number", flat=True)) == list(
        range(1, len(filled) + 1)
    )
    spent = Decimal("10.00") * sum(filled.values())
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("50.00") - spent
    assert Holding.objects.get(trader=trader, symbol="ACME").quantity == sum(filled.values()) if filled else True
    assert client.xpending(order_stream.stream_key(shard), order_stream.GROUP)["pending"] == 0  # all acknowledged


def _wait_for_snapshots(count: int, *, since: datetime, timeout: float = 60.0) -> int:
    """Snapshots computed since `since` (the service keeps the newest 3: enough for the 2 jobs an example queues)."""
    from apps.leaderboard.models import LeaderboardSnapshot

    deadline = time.monotonic() + timeout
    while (seen := LeaderboardSnapshot.objects.filter(computed_at__gte=since).count()) < count and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)  # polling the database for the worker's result, not standing in for it
    return seen


@DB_SETTINGS
@given(batches=st.lists(st.tuples(st.integers(1, 2), st.booleans()), min_size=1, max_size=2))
def test_property_27_background_jobs_run_beside_trading_without_blocking_it(
    market, make_trader, celery_worker_process, batches
):
    """Feature: trading-performance-optimization, Property 27: For any background task, the job queue should process it
    without blocking other operations — a leaderboard rebuild is queued for a real Celery worker that is running, or
    frozen (SIGSTOP) while orders arrive: every order is answered at once either way, and the worker runs every
    queued job once it runs again."""
    from apps.leaderboard.tasks import rebuild_leaderboard

    trader, _ = make_trader("100000.00")
    since, expected = datetime.now(UTC), 0
    for size, worker_frozen in batches:
        if worker_frozen:
            os.kill(celery_worker_process.pid, signal.SIGSTOP)
        try:
            rebuild_leaderboard.apply_async()
            expected += 1
            for _ in range(size):
                assert place_order(trader=trader, symbol="ACME", side="buy", quantity=1).order.status == "filled"
        finally:
            if worker_frozen:
                os.kill(celery_worker_process.pid, signal.SIGCONT)
    assert _wait_for_snapshots(expected, since=since) >= expected
