from decimal import Decimal

import pytest
from pymongo.errors import OperationFailure

from apps.portfolio.engine import journal
from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.selectors import portfolio_for
from apps.portfolio.services import OrderRejected, place_order
from tests.portfolio.conftest import MONGO_COMMANDS, set_quotes


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
    market, make_trader, order, code, field, status
) -> None:
    trader, _ = make_trader("1000.00")
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, **order)
    assert (caught.value.code, caught.value.field, caught.value.status) == (code, field, status)
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("1000.00")
    assert not Order.objects.exists() and not Invoice.objects.exists() and not Holding.objects.exists()


def test_a_repeated_client_order_id_returns_the_original_and_changes_nothing(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    first = place_order(trader=trader, symbol="ACME", side="buy", quantity=3, client_order_id="same")
    set_quotes({"ACME": "11.00"})
    again = place_order(trader=trader, symbol="ACME", side="buy", quantity=3, client_order_id="same")
    assert (first.created, again.created) == (True, False)
    assert again.order.pk == first.order.pk and again.order.price == Decimal("10.00")
    assert Order.objects.count() == 1 and Invoice.objects.count() == 1
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("970.00")


def test_a_repeated_client_order_id_with_another_body_is_a_conflict_naming_it(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=3, client_order_id="same")
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=4, client_order_id="same")
    assert (caught.value.code, caught.value.status) == ("client_order_id_conflict", 409)
    assert "quantity" in caught.value.message


def test_a_fill_writes_its_pending_invoice_in_the_same_batch_as_the_trade(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    result = place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    invoice = Invoice.objects.get(order_id=result.order.pk)
    assert (invoice.number, invoice.status) == (1, "pending")  # its PDF is rendered on first download


def engine_transactions() -> list[list[dict]]:
    """The engine's transactions among the counted commands, each as its list of command documents."""
    by_transaction: dict[tuple, list[dict]] = {}
    for document in MONGO_COMMANDS.documents:
        if document.get("txnNumber") is not None:
            by_transaction.setdefault((str(document.get("lsid")), document["txnNumber"]), []).append(document)
    return list(by_transaction.values())


def test_the_batch_transaction_writes_the_checkpoint_first_and_commits_with_majority(
    market, make_trader, round_trips
) -> None:
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=1)  # the account is now in the engine's memory
    round_trips(all_threads=True)
    place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    (transaction,) = engine_transactions()
    first = transaction[0]
    assert next(iter(first)) == "bulkWrite"  # every write of the batch in one command (MongoDB 8.0's bulkWrite)
    assert first["ops"][0]["update"] == 0 and first["nsInfo"][0]["ns"].endswith(
        ".portfolio_engineshard"
    )  # the checkpoint first
    commit = transaction[-1]
    assert "commitTransaction" in commit and commit["writeConcern"] == {"w": "majority"}


def test_batches_follow_one_another_on_the_engines_one_session_without_a_reload(
    market, make_trader, round_trips
) -> None:
    """Every batch commits on the engine's one session: the second and later transactions must not carry a
    read concern (a causally consistent session adds afterClusterTime, which bulkWrite refuses: each such
    batch failed and reloaded the engine)."""
    from apps.portfolio.models import EngineShard

    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    round_trips(all_threads=True)
    epochs = dict(EngineShard.objects.values_list("shard", "epoch"))
    for _ in range(3):
        place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    transactions = engine_transactions()
    assert len(transactions) == 3 and len({str(t[0]["lsid"]) for t in transactions}) == 1
    assert all("readConcern" not in document for t in transactions for document in t)
    assert dict(EngineShard.objects.values_list("shard", "epoch")) == epochs  # no reload took the shard again


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_an_order_costs_one_transaction_of_two_commands(market, make_trader, round_trips, side) -> None:
    """Checkpoint, orders, invoices, traders, holdings in one bulkWrite, then the commit: nothing else, and
    nothing outside it."""
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    counted = round_trips(all_threads=True)
    place_order(trader=trader, symbol="ACME", side=side, quantity=1)
    (transaction,) = engine_transactions()
    assert [next(iter(d)) for d in transaction] == ["bulkWrite", "commitTransaction"]
    namespaces = [info["ns"].split(".", 1)[1] for info in transaction[0]["nsInfo"]]
    assert namespaces == [
        "portfolio_engineshard",
        "portfolio_order",
        "portfolio_invoice",
        "portfolio_trader",
        "portfolio_holding",
    ]
    assert len(counted.mongo) == len(transaction)  # the order's path reads nothing: the account is in memory


def test_on_a_server_older_than_mongodb_8_a_batch_sends_one_bulk_command_per_collection(
    market, make_trader, round_trips, monkeypatch
) -> None:
    """Without the client-level bulkWrite (MongoDB before 8.0) the same writes go as one bulk command per
    collection, in the same transaction, with the same result."""
    monkeypatch.setattr(journal, "_one_command", lambda session: False)
    trader, _ = make_trader("1000.00")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    round_trips(all_threads=True)
    place_order(trader=trader, symbol="ACME", side="sell", quantity=1)
    (transaction,) = engine_transactions()
    assert [next(iter(d)) for d in transaction] == [
        "update",
        "insert",
        "insert",
        "update",
        "update",
        "commitTransaction",
    ]
    assert [transaction[0]["update"], transaction[1]["insert"]] == ["portfolio_engineshard", "portfolio_order"]
    assert Holding.objects.get(trader=trader, symbol="ACME").quantity == 1
    assert Order.objects.filter(trader=trader, status=Order.Status.FILLED).count() == 2


def transient_conflict() -> OperationFailure:
    return OperationFailure("WriteConflict", code=112, details={"errorLabels": ["TransientTransactionError"]})


def test_a_failed_batch_commit_is_decided_again_and_written_once(market, make_trader, monkeypatch) -> None:
    """The engine reloads from MongoDB and re-reads the unacknowledged entry: one order, one invoice, cash once."""
    from apps.portfolio.engine import journal

    trader, _ = make_trader("1000.00")
    real_commit = journal.commit
    failures = iter([transient_conflict(), transient_conflict()])

    def conflicting(effects: object, **kwargs: object) -> None:
        if (error := next(failures, None)) is not None:
            raise error
        real_commit(effects, **kwargs)

    monkeypatch.setattr(journal, "commit", conflicting)
    result = place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    assert result.created and next(failures, None) is None
    assert Order.objects.count() == 1 and Invoice.objects.get().number == 1
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("980.00")


def test_an_engine_that_cannot_commit_answers_503_and_writes_nothing(market, make_trader, monkeypatch) -> None:
    from django.conf import settings

    from apps.portfolio.engine import journal

    trader, _ = make_trader("1000.00")

    def always_conflicting(effects: object, **kwargs: object) -> None:
        raise transient_conflict()

    monkeypatch.setattr(journal, "commit", always_conflicting)
    monkeypatch.setattr(settings, "ENGINE_REPLY_TIMEOUT_SECONDS", 0.5)
    with pytest.raises(OrderRejected) as caught:
        place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    assert (caught.value.code, caught.value.status) == ("engine_unavailable", 503)
    assert not Order.objects.exists() and Trader.objects.get(pk=trader.pk).cash == Decimal("1000.00")
