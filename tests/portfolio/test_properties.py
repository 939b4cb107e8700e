"""Hypothesis properties of trading: batching (2), non-blocking jobs (10, 27), rate limits (12),
exactly-once orders (35) and data integrity (38). Database properties run on the real embedded
MongoDB (deadline=None); each example uses a fresh trader so examples never see each other."""

from __future__ import annotations

import math
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.core.ratelimit import ApiRateLimitMiddleware
from apps.core.redis import redis_client
from apps.portfolio.invoices import invoice_code
from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.selectors import portfolio_values
from apps.portfolio.services import AVERAGE_COST_STEP, CENT, OrderRejected, place_order
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


@pytest.fixture
def sent_jobs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Invoice jobs sent: (order id, whether a transaction was still open when it was sent)."""
    from django.db import connection

    from apps.portfolio import tasks

    sent: list[tuple[str, bool]] = []
    monkeypatch.setattr(
        tasks.generate_invoice,
        "apply_async",
        lambda args=(), **_: sent.append((args[0], connection.in_atomic_block_mongo)),
    )
    return sent


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
def test_property_35_each_client_order_id_executes_exactly_once(market, make_trader, sent_jobs, requests) -> None:
    """Feature: trading-performance-optimization, Property 35: For any critical background job, the system should
    ensure it is processed exactly once."""
    sent_jobs.clear()
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
    assert sorted(job for job, _ in sent_jobs) == sorted(str(pk) for _, _, pk in first.values())
    spent = sum(Decimal("10.00" if s == "ACME" else "25.50") * q for s, q, _ in first.values())
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("100000.00") - spent


operations = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(["ACME", "BOLT"]),
        st.integers(1, 60),
        prices,
        st.booleans(),  # the transaction fails half-way (after the trade is written)
    ),
    min_size=1,
    max_size=8,
)


@DB_SETTINGS
@given(cash=st.decimals(min_value=0, max_value=5000, places=2), ops=operations)
def test_property_38_cash_holdings_trades_and_invoices_always_agree(
    market, make_trader, sent_jobs, monkeypatch, cash, ops
) -> None:
    """Feature: trading-performance-optimization, Property 38: For any performance optimization implementation, data
    accuracy should be maintained."""
    from apps.portfolio import execution

    sent_jobs.clear()
    trader, _ = make_trader(cash)
    crash = {"now": False}

    def invoice_code_or_crash(**kwargs: Any) -> str:
        if crash["now"]:
            raise RuntimeError("injected failure after the trade insert")
        return invoice_code(**kwargs)

    monkeypatch.setattr(execution, "invoice_code", invoice_code_or_crash)
    expected_cash = cash
    held: dict[str, tuple[int, Decimal]] = {}
    filled = 0
    for side, symbol, quantity, price, fails in ops:
        set_quotes({symbol: price})
        amount = (price * quantity).quantize(CENT)
        owned, average = held.get(symbol, (0, Decimal(0)))
        crash["now"] = fails
        try:
            place_order(trader=trader, symbol=symbol, side=side, quantity=quantity)
        except RuntimeError:
            assert fails  # nothing of it may remain: checked below against the unchanged model
        except OrderRejected as rejection:
            expected = "insufficient_cash" if side == "buy" else "insufficient_holding"
            assert rejection.code == expected
            assert (amount > expected_cash) if side == "buy" else (quantity > owned)
        else:
            assert not fails
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
        assert len(sent_jobs) == filled


@DB_SETTINGS
@given(orders=st.lists(st.tuples(st.sampled_from(["ACME", "BOLT", "NOPE", "HALT"]), st.integers(0, 200)), max_size=6))
def test_property_10_orders_never_wait_for_their_invoice(market, make_trader, sent_jobs, monkeypatch, orders) -> None:
    """Feature: trading-performance-optimization, Property 10: For any invoice generation request, trade operations
    should continue without blocking."""
    from apps.portfolio import invoices, tasks

    sent_jobs.clear()

    def never_in_the_request(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the PDF was rendered inside the order request")

    monkeypatch.setattr(invoices, "render_invoice_pdf", never_in_the_request)
    monkeypatch.setattr(tasks, "render_invoice_pdf", never_in_the_request)
    trader, _ = make_trader("1000.00")
    placed: list[str] = []
    for symbol, quantity in orders:
        try:
            result = place_order(trader=trader, symbol=symbol, side="buy", quantity=quantity)
        except OrderRejected:
            continue
        placed.append(str(result.order.pk))
        assert Invoice.objects.get(order=result.order).status == Invoice.Status.PENDING  # answered before the PDF
    assert [job for job, _ in sent_jobs] == placed  # one job per trade, none for refusals
    assert not any(in_transaction for _, in_transaction in sent_jobs)  # sent after commit, never before


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


def _wait_until_ready(order_ids: list[object], timeout: float = 60.0) -> dict[object, str]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = dict(Invoice.objects.filter(order_id__in=order_ids).values_list("order_id", "status"))
        if all(status == Invoice.Status.READY for status in statuses.values()) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.02)  # polling the database for the worker's result, not standing in for it


@DB_SETTINGS
@given(batches=st.lists(st.tuples(st.integers(1, 2), st.booleans()), min_size=1, max_size=2))
def test_property_27_invoice_jobs_run_beside_trading_without_blocking_it(
    market, make_trader, celery_worker_process, batches
):
    """Feature: trading-performance-optimization, Property 27: For any background task, the job queue should process it
    without blocking other operations — with a real Celery worker that is running, or frozen (SIGSTOP) while orders
    arrive, every order is executed at once with its invoice pending, and the worker renders every invoice once it
    runs again."""
    trader, _ = make_trader("100000.00")
    placed = []
    for size, worker_frozen in batches:
        if worker_frozen:
            os.kill(celery_worker_process.pid, signal.SIGSTOP)
        try:
            for _ in range(size):
                result = place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
                placed.append(result.order.pk)
                if worker_frozen:  # answered while no job can possibly run
                    assert Invoice.objects.get(order_id=result.order.pk).status == Invoice.Status.PENDING
        finally:
            if worker_frozen:
                os.kill(celery_worker_process.pid, signal.SIGCONT)
    assert _wait_until_ready(placed) == dict.fromkeys(placed, Invoice.Status.READY)
