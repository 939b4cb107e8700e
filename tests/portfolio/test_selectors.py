from decimal import Decimal

import pytest

from apps.portfolio.models import Holding, Trader
from apps.portfolio.selectors import portfolio_for, portfolio_values
from apps.portfolio.services import trader_create
from tests.conftest import EngineThread
from tests.portfolio.conftest import MONGO_COMMANDS, list_symbols, set_quotes


def holdings_for(trader: Trader, count: int) -> list[str]:
    symbols = [f"H{n:04d}" for n in range(count)]
    Holding.objects.bulk_create(
        Holding(trader=trader, symbol=s, quantity=2, average_cost=Decimal("5.0000")) for s in symbols
    )
    set_quotes(dict.fromkeys(symbols, "6.00"))
    return symbols


def engines_stopped(engines: list[EngineThread]) -> None:
    """The order engines read their streams all the time: stopped, so Redis round trips counted from every
    thread are the read's own."""
    for running in engines:
        running.stop()


@pytest.mark.parametrize("count", [1, 500])
def test_a_portfolio_costs_the_same_round_trips_for_1_and_500_holdings(
    make_trader, order_engine, round_trips, count
) -> None:
    trader, _ = make_trader("0.00")
    holdings_for(trader, count)
    engines_stopped(order_engine)
    counted = round_trips()
    valued = portfolio_for(trader)
    assert MONGO_COMMANDS.commands == ["find"]  # one query for all holdings, no getMore
    assert counted.redis_calls == 1  # one MGET for all prices
    assert valued.holdings_value == Decimal("12.00") * count
    assert valued.unrealised_pnl == Decimal("2.00") * count


def test_valuing_many_traders_costs_the_same_round_trips_as_one(make_trader, order_engine, round_trips) -> None:
    traders = [make_trader("100.00")[0] for _ in range(20)]
    for trader in traders:
        holdings_for(trader, 25)
    engines_stopped(order_engine)
    counted = round_trips()
    one = portfolio_values([traders[0].pk])
    few = (list(MONGO_COMMANDS.commands), counted.redis_calls)
    counted = round_trips()
    many = portfolio_values([t.pk for t in traders])
    assert (
        few == (list(MONGO_COMMANDS.commands), counted.redis_calls) == (["find", "find", "find"], 1)
    )  # traders, users, holdings; one MGET
    assert one[traders[0].pk].total_value == Decimal("400.00")
    assert {v.total_value for v in many.values()} == {Decimal("400.00")} and len(many) == 20
    assert {v.username for v in many.values()} == {t.user.username for t in traders}


def test_a_long_list_of_traders_is_valued_in_short_lists(make_trader, round_trips, monkeypatch) -> None:
    """SecantusDB's `$in` costs the square of its length: every query names at most IN_LIST_MAX ids."""
    from apps.core import indexes

    monkeypatch.setattr(indexes, "IN_LIST_MAX", 5)
    traders = [make_trader("100.00")[0] for _ in range(12)]
    for trader in traders:
        holdings_for(trader, 2)
    round_trips()
    values = portfolio_values([t.pk for t in traders])
    assert MONGO_COMMANDS.commands == ["find"] * 9  # traders, users, holdings for each of 3 lists
    assert set(values) == {t.pk for t in traders}
    assert {v.total_value for v in values.values()} == {Decimal("124.00")}
    assert portfolio_values().keys() >= set(values)  # every trader, by scans


def test_a_holding_without_a_quote_is_valued_at_its_average_cost(make_trader) -> None:
    trader, _ = make_trader("0.00")
    Holding.objects.create(trader=trader, symbol="NEW", quantity=3, average_cost=Decimal("4.2500"))
    (holding,) = portfolio_for(trader).holdings
    assert (holding.last_price, holding.priced, holding.unrealised_pnl) == (Decimal("4.2500"), False, 0)


def test_an_unreachable_redis_values_holdings_at_cost_instead_of_failing(make_trader, monkeypatch) -> None:
    import redis

    from apps.portfolio import selectors

    def down(symbols: object) -> dict[str, Decimal]:
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(selectors, "latest_prices", down)
    trader, _ = make_trader("10.00")
    list_symbols("ACME")
    Holding.objects.create(trader=trader, symbol="ACME", quantity=1, average_cost=Decimal("3.0000"))
    assert portfolio_for(trader).total_value == Decimal("13.00")


def test_pin_secantusdb_gap_select_related_is_lost_when_sorting_by_the_joined_model(db: None) -> None:
    """Gap: with SecantusDB, select_related("user") combined with ordering by user__username (Trader's
    default ordering) returns traders without their user. Trader's default ordering is therefore
    its own created_at; when this test fails, the gap is gone."""
    trader, _ = trader_create(username="pinned", cash=Decimal(1))
    joined = Trader.objects.select_related("user").order_by("user__username").filter(pk=trader.pk).first()
    assert joined is not None and joined._state.fields_cache["user"] is None
    unordered = Trader.objects.select_related("user").order_by().filter(pk=trader.pk).first()
    assert unordered is not None and unordered._state.fields_cache["user"].username == "pinned"
