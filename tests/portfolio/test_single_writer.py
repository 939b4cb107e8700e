"""The order engine is the only writer of accounts, holdings, orders and trades (ADR 0008).

Why it matters: the engine decides every order against its own in-memory copy of its shard's accounts and
writes absolute values (cash, reservations, positions) in each batch. A write from anywhere else would be
overwritten by the engine's next batch, or decided against stale numbers: cash created or lost. So those
writes live in one module, `apps/portfolio/engine/journal.py`; `.importlinter` ("single-writer") lets only
the engine (plus account creation and the PDF store, which write what the engine never changes) import it;
and this test fails if any other module of `apps/` writes those collections itself.
"""

import ast
from pathlib import Path

import pytest

from apps.portfolio.engine import journal

APPS = Path(__file__).resolve().parents[2] / "apps"
ENGINE_MODELS = {"Trader", "Holding", "Order", "Invoice", "EngineShard"}
ORM_WRITES = {"create", "update", "bulk_create", "bulk_update", "get_or_create", "update_or_create", "delete"}
RAW_WRITES = {"insert_one", "insert_many", "update_one", "update_many", "delete_one", "delete_many", "bulk_write"}
RAW_WRITES |= {"replace_one", "find_one_and_update", "find_one_and_delete", "find_one_and_replace"}


def _writes(tree: ast.AST) -> list[str]:
    """`Model.objects.<write>(...)` and raw collection writes of an engine model (`..._collection(Model)...`)."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        names = {n.id for n in ast.walk(node.func.value) if isinstance(n, ast.Name)}
        if not names & ENGINE_MODELS:
            continue
        if node.func.attr in ORM_WRITES | RAW_WRITES:
            found.append(f"line {node.lineno}: {ast.unparse(node.func)}")
    return found


def test_no_module_but_the_journal_writes_accounts_holdings_orders_or_trades() -> None:
    offenders = {}
    for path in APPS.rglob("*.py"):
        if "migrations" in path.parts or path == Path(journal.__file__):
            continue
        if writes := _writes(ast.parse(path.read_text())):
            offenders[str(path.relative_to(APPS))] = writes
    assert offenders == {}


@pytest.mark.parametrize(
    "source",
    [
        "Trader.objects.filter(pk=1).update(cash=0)",
        "connection.get_collection(Holding._meta.db_table).update_one({}, {})",
    ],
)
def test_the_scan_sees_a_write_outside_the_journal(source: str) -> None:
    assert _writes(ast.parse(source))
