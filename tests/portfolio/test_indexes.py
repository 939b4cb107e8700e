"""Every query of the trading hot paths uses an index on the embedded MongoDB (explain, not timing)."""

import copy
from typing import Any

from django.db import connection

from apps.portfolio.models import Invoice
from apps.portfolio.selectors import invoice_with_trade, portfolio_for, trader_for_user
from apps.portfolio.services import place_order
from tests.portfolio.conftest import ALL_THREADS, MONGO_COMMANDS

# Not update/delete: SecantusDB's explain reports COLLSCAN for them even by _id, while the operation
# itself costs an index lookup (0.5 ms by _id in a 3 000-document collection, as fast as a find).
EXPLAINABLE = {"find", "aggregate", "findAndModify"}


def winning_stages(command: dict[str, Any]) -> list[str]:
    """The plan stages the server chose for a recorded command."""
    name = next(iter(command))
    body = {
        k: v
        for k, v in command.items()
        if k
        not in {
            "lsid",
            "txnNumber",
            "autocommit",
            "startTransaction",
            "$db",
            "$clusterTime",
            "readConcern",
            "writeConcern",
        }
    }
    if name == "aggregate":
        body["pipeline"] = body["pipeline"][:1]  # the $match that selects documents
    plan = connection.database.command("explain", body, verbosity="queryPlanner")
    planner = plan.get("queryPlanner") or plan["stages"][0]["$cursor"]["queryPlanner"]
    stage: dict[str, Any] | None = planner["winningPlan"]
    stages = []
    while stage:
        stages.append(stage["stage"])
        stage = stage.get("inputStage")
    return stages


def recorded(run: Any) -> list[dict[str, Any]]:
    """The explainable commands `run` sends, from every thread: the order engine's (its prefetch) with the caller's."""
    MONGO_COMMANDS.documents.clear()
    MONGO_COMMANDS.commands.clear()
    MONGO_COMMANDS.enabled_for = ALL_THREADS
    try:
        run()
    finally:
        MONGO_COMMANDS.enabled_for = None
    commands = [copy.deepcopy(d) for d in MONGO_COMMANDS.documents if next(iter(d)) in EXPLAINABLE]
    assert commands
    return commands


def test_the_order_path_buy_and_sell_to_zero_never_scans_a_collection(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    user = trader.user

    def trade() -> None:  # the first order's prefetch loads the account: its queries are recorded too
        for side in ("buy", "buy", "sell"):
            place_order(trader=trader_for_user(user), symbol="ACME", side=side, quantity=2 if side == "sell" else 1)

    for command in recorded(trade):
        collection = command[next(iter(command))]
        if collection == "market_symbol":
            continue  # the market app's lookup (its unique ticker index is partial: see the pin below)
        assert "COLLSCAN" not in winning_stages(command), command


def test_portfolio_and_invoice_reads_never_scan_a_collection(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=1).order
    code = Invoice.objects.get(order=order).verification_code

    def read() -> None:
        portfolio_for(trader)
        invoice_with_trade(order_id=order.pk)
        invoice_with_trade(verification_code=code)

    for command in recorded(read):
        assert "COLLSCAN" not in winning_stages(command), command


def test_pin_secantusdb_gap_partial_indexes_are_never_used(db: None) -> None:
    """Gap: SecantusDB's planner ignores partial indexes, and django-mongodb-backend makes every unique index
    partial; it also uses an index only when the index holds every field of the query. LookupIndex
    (apps/core/indexes.py) adds plain indexes for our lookups; when this test fails the gap is gone and they can go."""
    collection = connection.database["pin_partial_index"]
    collection.create_index("key", unique=True, name="partial", partialFilterExpression={"key": {"$type": "string"}})
    assert winning_stages({"find": "pin_partial_index", "filter": {"key": "x"}}) == ["COLLSCAN"]
    collection.create_index([("key", 1), ("other", 1)], name="plain")
    assert winning_stages({"find": "pin_partial_index", "filter": {"key": "x"}}) == ["FETCH", "IXSCAN"]
    collection.drop()
