from decimal import Decimal

import pytest
from pymongo.errors import OperationFailure

from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.selectors import portfolio_for
from apps.portfolio.services import OrderRejected, place_order
from tests.portfolio.conftest import MONGO_COMMANDS, set_quotes


@pytest.fixture
def _no_invoice_jobs() -> list[tuple]:
    return []


def test_a_buy_moves_cash_into_a_holding_and_records_trade_and_pending_invoice(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    result = place_order(trader=trader, symbol="acme", side="buy", quantity=30, client_order_id="a-1")
    assert result.created
    order = result.order
    assert (order.symbol, order.side, order.quantity, order.price, order.amount) == (
        "ACME",
        "buy",
        30,
        Decimal("10.00"),
        Decimal("300.00"),
    )
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("700.00")
    holding = Holding.objects.get(trader=trader, symbol="ACME")
    assert (holding.quantity, holding.average_cost) == (30, Decimal("10.0000"))
    invoice = Invoice.objects.get(order=order)
    assert (invoice.number, invoice.status) == (1, "pending")


def test_buying_again_averages_the_cost_and_selling_keeps_it(market, make_trader) -> None:
    trader, _ = make_trader("10000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=10)
    set_quotes({"ACME": "13.00"})
    place_order(trader=trader, symbol="ACME", side="buy", quantity=20)
    holding = Holding.objects.get(trader=trader, symbol="ACME")
    assert (holding.quantity, holding.average_cost) == (30, Decimal("12.0000"))
    place_order(trader=trader, symbol="ACME", side="sell", quantity=25)
    holding.refresh_from_db()
    assert (holding.quantity, holding.average_cost) == (5, Decimal("12.0000"))
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("10000.00") - 100 - 260 + 325
    place_order(trader=trader, symbol="ACME", side="sell", quantity=5)
    assert not Holding.objects.filter(trader=trader).exists()
    assert list(Invoice.objects.filter(trader=trader).order_by("number").values_list("number", flat=True)) == [
        1,
        2,
        3,
        4,
    ]


def test_portfolio_values_holdings_at_the_latest_price(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=10)
    set_quotes({"ACME": "12.50"})
    valued = portfolio_for(Trader.objects.get(pk=trader.pk))
    (holding,) = valued.holdings
    assert (holding.last_price, holding.market_value, holding.unrealised_pnl) == (
        Decimal("12.50"),
        Decimal("125.00"),
        Decimal("25.00"),
    )
    assert valued.total_value == Decimal("1025.00")
    assert valued.return_percent == Decimal("2.50")


@pytest.mark.parametrize(
    ("order", "code", "field", "status"),
    [
        ({"symbol": "NOPE", "side": "buy", "quantity": 1}, "unknown_symbol", "symbol", 422),
        ({"symbol": "HALT", "side": "buy", "quantity": 1}, "symbol_halted", "symbol", 409),
        ({"symbol": "NOQ", "side": "buy", "quantity": 1}, "no_quote", "symbol", 409),
        ({"symbol": "ACME", "side": "buy", "quantity": 0}, "invalid_quantity", "quantity", 422),
        ({"symbol": "ACME", "side": "buy", "quantity": 1_000_001}, "invalid_quantity", "quantity", 422),
        ({"symbol": "ACME", "side": "hold", "quantity": 1}, "invalid_side", "side", 422),
        ({"symbol": "ACME", "side": "buy", "quantity": 101}, "insufficient_cash", "quantity", 409),
        ({"symbol": "ACME", "side": "sell", "quantity": 1}, "insufficient_holding", "quantity", 409),
        (
            {"symbol": "ACME", "side": "buy", "quantity": 1, "client_order_id": "x" * 49},
            "invalid_client_order_id",
            "client_order_id",
            422,
        ),
    ],
)
def test_each_refusal_has_its_own_code_and_field_and_writes_nothing(
    market, make_trader, order, code, field, status, _no_invoice_jobs
) -> None:
    trader, _ = make_trader("1000.00")
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, **order)
    assert (caught.value.code, caught.value.field, caught.value.status) == (code, field, status)
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("1000.00")
    assert not Order.objects.exists() and not Invoice.objects.exists() and not Holding.objects.exists()
    assert _no_invoice_jobs == []


def test_a_repeated_client_order_id_returns_the_original_and_changes_nothing(market, make_trader, _no_invoice_jobs):
    trader, _ = make_trader("1000.00")
    first = place_order(trader=trader, symbol="ACME", side="buy", quantity=3, client_order_id="same")
    set_quotes({"ACME": "11.00"})
    again = place_order(trader=trader, symbol="ACME", side="buy", quantity=3, client_order_id="same")
    assert (first.created, again.created) == (True, False)
    assert again.order.pk == first.order.pk and again.order.price == Decimal("10.00")
    assert Order.objects.count() == 1 and len(_no_invoice_jobs) == 1
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("970.00")


def test_a_repeated_client_order_id_with_another_body_is_a_conflict_naming_it(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=3, client_order_id="same")
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=4, client_order_id="same")
    assert (caught.value.code, caught.value.status) == ("client_order_id_conflict", 409)
    assert "quantity" in caught.value.message


def test_the_invoice_job_is_sent_after_commit_with_the_trade_id(market, make_trader, monkeypatch) -> None:
    from django.db import connection

    from apps.portfolio import tasks

    trader, _ = make_trader("1000.00")
    sent: list[tuple[str, bool]] = []
    monkeypatch.setattr(
        tasks.generate_invoice,
        "apply_async",
        lambda args=(), **_: sent.append((args[0], connection.in_atomic_block_mongo)),
    )
    result = place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    assert sent == [(str(result.order.pk), False)]


def test_the_order_transaction_reads_a_snapshot_and_commits_with_majority(market, make_trader, round_trips) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=1)  # the symbol directory is now cached
    counted = round_trips()
    place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    in_transaction = [d for d in MONGO_COMMANDS.documents if d.get("txnNumber") is not None]
    assert in_transaction[0]["readConcern"] == {"level": "snapshot"}
    commit = next(d for d in in_transaction if "commitTransaction" in d)
    assert commit["writeConcern"] == {"w": "majority"}
    assert {d["txnNumber"] for d in in_transaction} == {commit["txnNumber"]}  # one transaction for every write
    written = {next(iter(d)) for d in in_transaction} - {"commitTransaction"}
    assert written >= {"findAndModify", "insert"}
    # The trader's lock (SET NX), the price (one MGET), after commit the invalidation of the cached
    # account and order list (one pipelined DEL), the trader's two events (one script call), and the lock's release.
    assert counted.redis_calls == 5


def test_an_order_costs_five_mongodb_round_trips_all_inside_its_transaction(market, make_trader, round_trips) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=1)  # the symbol directory is now cached
    for side in ("buy", "sell"):
        counted = round_trips()
        place_order(trader=trader, symbol="ACME", side=side, quantity=1)
        assert counted.mongo == [
            "insert",
            "findAndModify",
            "update" if side == "buy" else "findAndModify",
            "insert",
            "commitTransaction",
        ]


def transient_conflict() -> OperationFailure:
    return OperationFailure("WriteConflict", code=112, details={"errorLabels": ["TransientTransactionError"]})


def test_a_transient_transaction_conflict_is_retried_until_it_commits(market, make_trader, monkeypatch) -> None:
    from apps.portfolio import services

    trader, _ = make_trader("1000.00")
    real_execute = services._execute
    failures = iter([transient_conflict(), transient_conflict()])

    def conflicting(ticket: object) -> Order:
        order = real_execute(ticket)  # the writes happen, then the commit "conflicts": all must roll back
        if (error := next(failures, None)) is not None:
            raise error
        return order

    monkeypatch.setattr(services, "_execute", conflicting)
    result = place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    assert result.created
    assert Order.objects.count() == 1 and Invoice.objects.get().number == 1
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("980.00")


def test_conflicts_that_never_clear_end_in_a_503_busy_and_write_nothing(market, make_trader, monkeypatch) -> None:
    from apps.portfolio import services

    trader, _ = make_trader("1000.00")

    def always_conflicting(ticket: object) -> Order:
        raise transient_conflict()

    monkeypatch.setattr(services, "_execute", always_conflicting)
    monkeypatch.setattr(services, "TRANSACTION_BUDGET_SECONDS", 0.05)
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    assert (caught.value.code, caught.value.status) == ("busy", 503)
    assert not Order.objects.exists()


def test_a_failed_commit_leaves_the_connection_ready_for_the_next_order(market, make_trader, monkeypatch) -> None:
    from django.db import connection
    from django_mongodb_backend.base import DatabaseWrapper

    trader, _ = make_trader("1000.00")
    real_commit = DatabaseWrapper.commit_mongo
    failures = iter([transient_conflict()])

    def commit_once_failing(self: DatabaseWrapper) -> None:
        if (error := next(failures, None)) is not None:
            raise error
        real_commit(self)

    monkeypatch.setattr(DatabaseWrapper, "commit_mongo", commit_once_failing)
    assert place_order(trader=trader, symbol="ACME", side="buy", quantity=1).created
    assert connection.session is None and not connection.in_atomic_block_mongo
    assert Order.objects.count() == 1 and Trader.objects.get(pk=trader.pk).cash == Decimal("990.00")


def test_a_request_deadline_hit_mid_transaction_aborts_it_at_once(market, make_trader, monkeypatch) -> None:
    """No retry loop past the deadline, and no abandoned transaction keeps the trader's row locked."""
    import time

    import pymongo
    from pymongo.errors import ExecutionTimeout

    from apps.portfolio import services

    trader, _ = make_trader("1000.00")
    real_execute = services._execute

    def slow(ticket: object) -> Order:
        order = real_execute(ticket)
        time.sleep(0.3)  # the deadline passes with the writes done and the commit still to come
        return order

    monkeypatch.setattr(services, "_execute", slow)
    started = time.monotonic()
    with pytest.raises(ExecutionTimeout) as caught, pymongo.timeout(0.2):
        place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    assert time.monotonic() - started < 1.0  # a timeout is not retried like a conflict
    assert caught.value.timeout  # the driver's own deadline error, which the API answers with a 503
    monkeypatch.setattr(services, "_execute", real_execute)
    retries: list[int] = []
    monkeypatch.setattr(services, "_backoff", retries.append)
    assert place_order(trader=trader, symbol="ACME", side="buy", quantity=1).created
    assert retries == []  # no conflict with a leftover transaction
    assert Order.objects.count() == 1 and Trader.objects.get(pk=trader.pk).cash == Decimal("990.00")
