"""Analytics: counters advanced incrementally past new trades, a summary precomputed and served from the cache."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.analytics.models import AnalyticsState
from apps.analytics.schemas import AnalyticsOut
from apps.analytics.selectors import analytics_summary
from apps.analytics.services import SETTLE_SECONDS, TradeCounters, TradeFact, analytics_refresh, volatility
from apps.core.cache import default_cache
from apps.core.redis import redis_client
from apps.market.models import Symbol
from apps.market.ring import ring_key
from apps.portfolio.models import Invoice, Order, Trader
from apps.portfolio.services import trader_create
from tests.mongo_commands import MONGO_COMMANDS

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AUTHENTICATION_COLLECTIONS = {"auth_user", "core_apitoken"}

trade_facts = st.builds(
    TradeFact,
    trader_id=st.sampled_from(["a", "b", "c"]),
    symbol=st.sampled_from(["ACME", "BOLT", "CORE"]),
    quantity=st.integers(1, 1000),
    amount=st.decimals(0, 100_000, places=2),
    created_at=st.integers(0, 3 * 86_400).map(lambda s: T0 + timedelta(seconds=s)),
)


@hypothesis_settings(max_examples=200)
@given(trades=st.lists(trade_facts, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=5))
def test_counting_trades_in_any_batches_equals_counting_them_at_once(trades: list[TradeFact], cuts: list[int]) -> None:
    """The precomputed counters advance incrementally: any batching of the same trades counts the same."""
    at_once = TradeCounters()
    at_once.add(trades)
    incremental = TradeCounters()
    bounds = sorted({0, len(trades), *(min(c, len(trades)) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        incremental.add(trades[start:end])
    assert incremental == at_once
    now = T0 + timedelta(days=3)
    assert incremental.active_traders(now) == len(
        {t.trader_id for t in trades if t.created_at >= now - timedelta(hours=24)}
    )


@hypothesis_settings(max_examples=200)
@given(prices=st.lists(st.floats(1, 1000), max_size=50), price=st.floats(1, 1000), points=st.integers(0, 50))
def test_volatility_is_never_negative_and_zero_for_a_flat_price(prices: list[float], price: float, points: int) -> None:
    assert volatility(prices) >= 0
    assert volatility([price] * points) == 0


@hypothesis_settings(max_examples=100)
@given(start=st.floats(1, 1000), moves=st.lists(st.sampled_from([-1.0, 1.0]), min_size=2, max_size=30))
def test_prices_that_move_by_different_percentages_have_a_positive_volatility(start: float, moves: list[float]) -> None:
    """Returns of +10 % and -10 %: a spread of returns has a volatility of several percent, equal returns about 0."""
    prices = [start]
    for move in moves:
        prices.append(prices[-1] * (1 + move / 10))
    if len(set(moves)) > 1:
        assert volatility(prices) > 1
    else:
        assert volatility(prices) < 1e-6


def trader() -> Trader:
    return trader_create(username=f"t-{uuid.uuid4().hex[:8]}", cash=Decimal("1000.00"))[0]


def trade(who: Trader, symbol: str, quantity: int, price: str, at: datetime) -> Order:
    """A filled order and its invoice, as a fill writes them (the counters read trades by invoice id)."""
    order = Order.objects.create(
        trader=who,
        client_order_id=uuid.uuid4().hex,
        symbol=symbol,
        side="buy",
        quantity=quantity,
        price=Decimal(price),
        amount=Decimal(price) * quantity,
        created_at=at,
    )
    number = Invoice.objects.filter(trader=who).count() + 1
    Invoice.objects.create(order=order, trader=who, number=number, verification_code=uuid.uuid4().hex)
    return order


@pytest.fixture
def buyer(db: None) -> Trader:
    return trader()


@pytest.fixture
def listed(db: None) -> None:
    for ticker, sector in (("ACME", "technology"), ("BOLT", "energy"), ("CORE", "technology")):
        Symbol.objects.create(ticker=ticker, name=ticker, sector=sector, initial_price=Decimal("10"))


@pytest.mark.django_db
def test_a_refresh_counts_each_trade_once(listed: None) -> None:
    alice, bob = trader(), trader()
    trade(alice, "ACME", 10, "10.00", timezone.now())
    trade(bob, "ACME", 5, "11.00", timezone.now())
    later = timezone.now() + timedelta(seconds=SETTLE_SECONDS + 1)
    analytics_refresh(now=later)
    analytics_refresh(now=later + timedelta(seconds=60))  # nothing new: nothing counted twice
    state = AnalyticsState.objects.get()
    assert (state.total_trades, state.total_volume, state.total_value) == (2, 15, Decimal("155.00"))
    summary = state.summary
    assert summary["active_traders_24h"] == 2
    assert summary["most_traded"][0] == {"symbol": "ACME", "trades": 2, "volume": 15}
    technology = next(s for s in summary["sectors"] if s["sector"] == "technology")
    assert (technology["symbols"], technology["trades"]) == (2, 2)


@pytest.mark.django_db
def test_a_trade_younger_than_the_settle_time_is_counted_by_the_next_refresh(listed: None) -> None:
    now = timezone.now()
    analytics_refresh(now=now)  # the watermark sits SETTLE_SECONDS before now
    trade(trader(), "BOLT", 3, "20.00", now)
    analytics_refresh(now=now + timedelta(seconds=1))
    assert AnalyticsState.objects.get().total_trades == 0
    analytics_refresh(now=now + timedelta(seconds=SETTLE_SECONDS + 2))
    assert AnalyticsState.objects.get().total_trades == 1


@pytest.mark.django_db
def test_a_refresh_reads_only_orders_after_the_watermark(listed: None) -> None:
    for _ in range(5):
        trade(trader(), "ACME", 1, "10.00", timezone.now())
    later = timezone.now() + timedelta(seconds=SETTLE_SECONDS + 1)
    analytics_refresh(now=later)
    with MONGO_COMMANDS.recording() as commands:
        analytics_refresh(now=later + timedelta(seconds=60))
    reads = [c.collection for c in commands if c.collection in (Order._meta.db_table, Invoice._meta.db_table)]
    assert reads == [Invoice._meta.db_table]  # one _id range read after the watermark, however many trades exist


@pytest.mark.django_db
def test_a_resting_order_is_counted_when_it_fills_not_when_it_was_placed(
    listed: None, order_engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watermark passes the order's id while it rests; its fill, later (a fake clock for the ids made
    from then on), is counted by the next refresh."""
    import time
    from types import SimpleNamespace

    import bson.objectid

    from apps.core.redis import redis_client as redis
    from apps.market.quotes import stage_quotes
    from apps.market.ticks import Tick
    from apps.portfolio.models import Order as OrderModel
    from apps.portfolio.services import OrderTerms, place_order
    from tests.wait import wait_until

    pipe = redis().pipeline()
    stage_quotes(pipe, [Tick("ACME", 10.0, 10.0, 1, 1_000)])
    pipe.execute()
    who = trader()
    terms = OrderTerms(type="limit", limit_price=Decimal("9.00"), time_in_force="gtc")
    resting = place_order(trader=who, symbol="ACME", side="buy", quantity=4, terms=terms).order
    later = timezone.now() + timedelta(seconds=SETTLE_SECONDS + 1)
    analytics_refresh(now=later)  # the watermark passes the resting order's id
    assert AnalyticsState.objects.get().total_trades == 0
    monkeypatch.setattr(bson.objectid, "time", SimpleNamespace(time=lambda: time.time() + 600))  # it fills later
    pipe = redis().pipeline()
    stage_quotes(pipe, [Tick("ACME", 8.5, 10.0, 1, 2_000)])  # the engine's tick: the order fills
    pipe.execute()
    wait_until(lambda: OrderModel.objects.get(pk=resting.pk).status == "filled", what="the resting order's fill")
    analytics_refresh(now=timezone.now() + timedelta(seconds=600 + SETTLE_SECONDS + 1))
    state = AnalyticsState.objects.get()
    assert (state.total_trades, state.total_volume) == (1, 4)


@pytest.mark.django_db
def test_the_most_volatile_symbols_come_from_the_price_rings(listed: None) -> None:
    pipe = redis_client().pipeline()
    for symbol, prices in {"ACME": [10, 12, 9, 13, 8], "BOLT": [10, 10.1, 10, 10.1, 10]}.items():
        points = [
            json.dumps({"tick_id": str(n), "price": p, "volume": 0, "timestamp": n}) for n, p in enumerate(prices)
        ]
        pipe.lpush(ring_key(symbol), *points)
    pipe.execute()
    summary = analytics_refresh().summary
    assert [m["symbol"] for m in summary["most_volatile"]] == ["ACME", "BOLT"]


@pytest.mark.django_db
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=st.lists(st.tuples(st.sampled_from(["ACME", "BOLT", "CORE"]), st.integers(1, 50)), max_size=6),
    after=st.lists(st.tuples(st.sampled_from(["ACME", "BOLT", "CORE"]), st.integers(1, 50)), max_size=6),
    moves=st.dictionaries(
        st.sampled_from(["ACME", "BOLT", "CORE"]), st.lists(st.integers(1, 100_000), min_size=3, max_size=6)
    ),
    cold=st.booleans(),
)
def test_a_summary_request_serves_the_precomputed_document_and_computes_nothing(
    listed: None,
    auth_header: dict[str, str],
    buyer: Trader,
    before: list[tuple[str, int]],
    after: list[tuple[str, int]],
    moves: dict[str, list[int]],
    cold: bool,
) -> None:
    """Feature: trading-performance-optimization, Property 13: For any analytics request, the system should return
    pre-computed results rather than calculating in real-time — whatever the trades before and after the last
    refresh, the prices that moved since (the volatility's source) and whether the cache is warm or cold, a
    summary request reads nothing but the precomputed document and answers exactly what the refresh computed,
    every field of it; trades and moves since then appear only after the next refresh."""
    Order.objects.all().delete()
    AnalyticsState.objects.all().delete()
    redis_client().flushdb()
    default_cache().local.clear()
    for symbol, quantity in before:
        trade(buyer, symbol, quantity, "10.00", timezone.now())
    # The refresh counts orders whose ObjectId (real time) is SETTLE_SECONDS older than its `now`:
    # read the clock once every trade exists, however slowly the machine created them.
    analytics_refresh(now=timezone.now() + timedelta(seconds=SETTLE_SECONDS + 1))
    precomputed = AnalyticsState.objects.get()
    for symbol, quantity in after:
        trade(buyer, symbol, quantity, "10.00", timezone.now())
    if cold:
        redis_client().flushdb()
        default_cache().local.clear()
    for symbol, cents in moves.items():  # prices move after the refresh: a summary computed now would show them
        points = [
            json.dumps({"tick_id": str(n), "price": c / 100, "volume": 0, "timestamp": n}) for n, c in enumerate(cents)
        ]
        redis_client().lpush(ring_key(symbol), *points)
    with MONGO_COMMANDS.recording() as commands:
        body = Client().get("/api/v1/analytics/summary", **auth_header).json()
    reads = [c for c in commands if c.collection not in AUTHENTICATION_COLLECTIONS]  # who asks is not the summary
    assert {c.collection for c in reads} <= {AnalyticsState._meta.db_table}
    assert len(reads) <= 1
    served = {k: v for k, v in body.items() if k != "computed_at"}
    assert served == AnalyticsOut(computed_at=None, **precomputed.summary).model_dump(
        mode="json", exclude={"computed_at"}
    )
    assert abs(datetime.fromisoformat(body["computed_at"]) - precomputed.computed_at) < timedelta(milliseconds=1)
    assert (body["total_trades"], body["total_volume"]) == (precomputed.total_trades, precomputed.total_volume)
    assert (body["total_trades"], body["total_volume"]) == (len(before), sum(q for _, q in before))


@pytest.mark.django_db
def test_a_summary_request_reads_only_the_precomputed_document(listed: None, auth_header: dict[str, str]) -> None:
    trade(trader(), "ACME", 1, "10.00", timezone.now())
    analytics_refresh(now=timezone.now() + timedelta(seconds=SETTLE_SECONDS + 1))
    redis_client().flushdb()  # a cold cache: the request must still not compute anything
    default_cache().local.clear()
    with MONGO_COMMANDS.recording() as commands:
        response = Client().get("/api/v1/analytics/summary", **auth_header)
    assert response.status_code == 200
    assert response.json()["total_trades"] == 1
    touched = {c.collection for c in commands}
    assert Order._meta.db_table not in touched
    assert "market_pricetick" not in touched
    assert AnalyticsState._meta.db_table in touched


@pytest.mark.django_db
def test_a_warm_summary_costs_no_database_operation(listed: None) -> None:
    analytics_refresh()
    default_cache().listener.wait_subscribed(5)
    analytics_summary()
    with MONGO_COMMANDS.recording() as commands:
        for _ in range(20):
            assert analytics_summary()["computed_at"] is not None
    assert commands == []


@pytest.mark.django_db
def test_before_the_first_refresh_the_summary_is_empty(auth_header: dict[str, str]) -> None:
    body = Client().get("/api/v1/analytics/summary", **auth_header).json()
    assert body["computed_at"] is None
    assert body["total_trades"] == 0
