"""The journal: the one module that writes accounts, holdings, orders and trade records (ADR 0008).

- `commit`: everything one batch decided, in ONE MongoDB transaction (majority writes; it reads nothing):
  the shard's checkpoint (fenced by its epoch) first, then orders, invoices, accounts and holdings, all in
  ONE bulkWrite command (MongoDB 8.0's client-level bulk write; one bulk command per collection on an
  older server), then the commit: two commands a batch, however many orders it holds. So a batch is all
  written or none of it, and the checkpoint says which stream entries it covered.
- `load_*`: the engine's state at start, and accounts or orders it has not seen yet (its prefetch).
- `account_insert`, `invoice_pdf_store`: the only other writes (a new account the engine has never
  seen; a confirmation's PDF, rendered on first download). Nothing else may import this module
  (`.importlinter`, contract "single-writer"; tests/portfolio/test_single_writer.py says why).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Any, cast

from bson import Decimal128, ObjectId
from django.db import connection as default_connection
from django.utils import timezone
from django_mongodb_backend.base import DatabaseWrapper
from pymongo import DeleteOne, InsertOne, ReturnDocument, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.write_concern import WriteConcern

from apps.core.clock import epoch_ms, moment, to_milliseconds
from apps.core.indexes import in_lists
from apps.portfolio.engine.effects import Effects, InvoiceRecord
from apps.portfolio.engine.state import Account, OrderState, Position
from apps.portfolio.models import EngineShard, Holding, Invoice, Order, Trader

connection = cast(DatabaseWrapper, default_connection)
ONE_BATCH = 1_000_000


class Fenced(Exception):
    """Another engine took this shard (a newer epoch): this one must stop."""


@dataclass(frozen=True)
class Checkpoint:
    epoch: int
    last_entry: str


def _collection(model: Any) -> Collection:
    return connection.get_collection(model._meta.db_table)


def _money(cents: int | None) -> Decimal128 | None:
    return None if cents is None else Decimal128(Decimal(cents).scaleb(-2))


def _cents(value: Any) -> int | None:
    if value is None:
        return None
    number = value.to_decimal() if isinstance(value, Decimal128) else Decimal(str(value))
    return int((number * 100).to_integral_value())


def _ms(value: Any) -> int | None:
    return None if value is None else epoch_ms(value.replace(tzinfo=UTC))  # the driver's naive UTC


# --- loading ----------------------------------------------------------------------------------------------


def open_session() -> ClientSession:
    """The engine's own MongoDB session: every batch's transaction runs on it, and its id is the shard's.

    Not causally consistent: the transactions read nothing, and a causal session would give every
    transaction after the first a read concern (afterClusterTime), which bulkWrite refuses."""
    connection.ensure_connection()
    return connection.connection.start_session(causal_consistency=False)


def claim(shard: int, session: ClientSession) -> Checkpoint:
    """Take the shard: the next epoch (fencing any engine still running it), with its checkpoint.

    A killed engine may have left a transaction open (kill -9 between its writes and its commit): the server
    keeps it, holding the shard's documents, for up to a minute (transactionLifetimeLimitSeconds). So the
    previous engine's session, recorded here at its claim, is killed first: its transaction is aborted at
    once, and this claim does not wait behind it."""
    shards = _collection(EngineShard)
    previous = shards.find_one({"shard": shard}, {"session": 1})
    if previous is not None and previous.get("session"):
        connection.connection.admin.command("killSessions", [previous["session"]])
    document = shards.find_one_and_update(
        {"shard": shard},
        {
            "$inc": {"epoch": 1},
            "$set": {"session": session.session_id},
            "$setOnInsert": {"last_entry": "0-0", "updated_at": None},
        },
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    assert document is not None  # an upsert returning the document after it
    return Checkpoint(int(document["epoch"]), str(document["last_entry"]))


def committed_through(shard: int) -> str:
    document = _collection(EngineShard).find_one({"shard": shard}, {"last_entry": 1})
    return str(document["last_entry"]) if document else "0-0"


def order_state(document: dict[str, Any]) -> OrderState:
    return OrderState(
        id=document["_id"],
        account_id=document["trader_id"],
        client_order_id=document["client_order_id"],
        symbol=document["symbol"],
        side=document["side"],
        quantity=int(document["quantity"]),
        type=document.get("type", "market"),
        time_in_force=document.get("time_in_force", "day"),
        created_ms=_ms(document["created_at"]) or 0,
        limit_cents=_cents(document.get("limit_price")),
        stop_cents=_cents(document.get("stop_price")),
        triggered=bool(document.get("triggered")),
        reserved_cents=_cents(document.get("reserved_cash")) or 0,
        status=document.get("status", "filled"),
        reason=document.get("reason", ""),
        price_cents=_cents(document.get("price")),
        amount_cents=_cents(document.get("amount")),
        expires_ms=_ms(document.get("expires_at")),
        closed_ms=_ms(document.get("closed_at")),
    )


def open_orders(shard_of: Any, shard: int) -> list[OrderState]:
    """Every open order of the shard's accounts (an index range on status)."""
    documents = _collection(Order).find({"status": Order.Status.OPEN}, batch_size=ONE_BATCH)
    return [order_state(d) for d in documents if shard_of(d["trader_id"]) == shard]


def load_accounts(ids: Iterable[ObjectId]) -> dict[ObjectId, Account]:
    """Accounts with their positions and every client_order_id they used, 100 ids a query (in_lists)."""
    accounts: dict[ObjectId, Account] = {}
    for some in in_lists(list(ids)):
        accounts.update(_accounts({"_id": {"$in": some}}, {"trader_id": {"$in": some}}))
    return accounts


def load_shard_accounts(shard_of: Any, shard: int) -> dict[ObjectId, Account]:
    """Every account of the shard, in three scans whatever their number: the engine starts with all of them,
    so an order never waits for its account to be read (one read per account cost an order ~3 commands)."""
    return {account_id: account for account_id, account in _accounts({}, {}).items() if shard_of(account_id) == shard}


def _accounts(traders: dict[str, Any], owned: dict[str, Any]) -> dict[ObjectId, Account]:
    """The accounts `traders` selects, with the holdings and orders `owned` selects (one find each)."""
    accounts: dict[ObjectId, Account] = {}
    fields = {"user_id": 1, "cash": 1, "reserved_cash": 1, "invoice_sequence": 1}
    for document in _collection(Trader).find(traders, fields, batch_size=ONE_BATCH):
        accounts[document["_id"]] = Account(
            id=document["_id"],
            user_id=document["user_id"],
            cash=_cents(document.get("cash")) or 0,
            reserved=_cents(document.get("reserved_cash")) or 0,
            invoice_sequence=int(document.get("invoice_sequence") or 0),
        )
    for held in _collection(Holding).find(owned, batch_size=ONE_BATCH):
        if (account := accounts.get(held["trader_id"])) is not None:
            cost = held["average_cost"].to_decimal() if held.get("average_cost") is not None else Decimal(0)
            account.positions[held["symbol"]] = Position(int(held["quantity"]), cost, int(held.get("reserved") or 0))
    used = _collection(Order).find(owned, {"trader_id": 1, "client_order_id": 1}, batch_size=ONE_BATCH)
    for order in used:
        if (account := accounts.get(order["trader_id"])) is not None:
            account.client_orders[order["client_order_id"]] = order["_id"]
    return accounts


def load_orders(ids: Iterable[ObjectId]) -> list[OrderState]:
    return [order_state(d) for some in in_lists(list(ids)) for d in _collection(Order).find({"_id": {"$in": some}})]


# --- the batch ------------------------------------------------------------------------------------------


def _order_document(order: OrderState) -> dict[str, Any]:
    return {
        "_id": order.id,
        "trader_id": order.account_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side,
        "quantity": order.quantity,
        "type": order.type,
        "limit_price": _money(order.limit_cents),
        "stop_price": _money(order.stop_cents),
        "time_in_force": order.time_in_force,
        "created_at": moment(order.created_ms),
        **_order_changes(order),
    }


def _order_changes(order: OrderState) -> dict[str, Any]:
    """What may change on an order after it is placed."""
    return {
        "triggered": order.triggered,
        "reserved_cash": _money(order.reserved_cents),
        "price": _money(order.price_cents),
        "amount": _money(order.amount_cents),
        "status": order.status,
        "reason": order.reason,
        "expires_at": None if order.expires_ms is None else moment(order.expires_ms),
        "closed_at": None if order.closed_ms is None else moment(order.closed_ms),
    }


def _invoice_document(invoice: InvoiceRecord) -> dict[str, Any]:
    return {
        # Made at the commit, not the order's id: invoice ids order trades by when they filled, so analytics'
        # watermark (apps/portfolio/selectors.py trades_in_id_range) counts a resting order's later fill.
        "_id": ObjectId(),
        "order_id": invoice.order_id,
        "trader_id": invoice.account_id,
        "number": invoice.number,
        "status": Invoice.Status.PENDING,  # pending: its PDF is made on first download
        "verification_code": invoice.verification_code,
        "pdf": None,
        "created_at": moment(invoice.created_ms),
        "ready_at": None,
    }


def _holding_writes(effects: Effects, *, namespace: str) -> list[UpdateOne | DeleteOne]:
    writes: list[UpdateOne | DeleteOne] = []
    for account_id, symbol in sorted(effects.positions, key=lambda p: (str(p[0]), p[1])):
        position = effects.accounts[account_id].positions.get(symbol) if account_id in effects.accounts else None
        match = {"trader_id": account_id, "symbol": symbol}
        if position is None:
            writes.append(DeleteOne(match, namespace=namespace))
            continue
        change = {
            "quantity": position.quantity,
            "average_cost": Decimal128(position.average_cost),
            "reserved": position.reserved,
            "updated_at": moment(effects.at_ms),
        }
        writes.append(UpdateOne(match, {"$set": change}, upsert=True, namespace=namespace))
    return writes


Write = InsertOne[dict[str, Any]] | UpdateOne | DeleteOne
CLIENT_BULK_WIRE_VERSION = 25  # MongoDB 8.0: one bulkWrite command may write several collections


def _namespaced(model: Any) -> str:
    return str(_collection(model).full_name)


def _batch_writes(effects: Effects) -> list[tuple[Any, Write]]:
    """The batch's writes, in order, each with the model whose collection it writes."""
    orders, invoices, traders, holdings = (_namespaced(m) for m in (Order, Invoice, Trader, Holding))
    writes: list[tuple[Any, Write]] = [
        (Order, InsertOne(_order_document(o), namespace=orders)) for o in effects.new_orders.values()
    ]
    writes += [
        (Order, UpdateOne({"_id": o.id}, {"$set": _order_changes(o)}, namespace=orders))
        for o in effects.changed_orders.values()
    ]
    writes += [(Invoice, InsertOne(_invoice_document(i), namespace=invoices)) for i in effects.invoices]
    for a in effects.accounts.values():
        money = {"cash": _money(a.cash), "reserved_cash": _money(a.reserved), "invoice_sequence": a.invoice_sequence}
        writes.append((Trader, UpdateOne({"_id": a.id}, {"$set": money}, namespace=traders)))
    writes += [(Holding, write) for write in _holding_writes(effects, namespace=holdings)]
    return writes


def _one_command(session: ClientSession) -> bool:
    """Whether the server takes MongoDB 8.0's client-level bulkWrite (SecantusDB does; an older cluster not)."""
    description = session.client.topology_description
    versions = [server.max_wire_version or 0 for server in description.known_servers]
    return bool(versions) and min(versions) >= CLIENT_BULK_WIRE_VERSION


def _write_all(writes: list[tuple[Any, Write]], session: ClientSession) -> int:
    """Send `writes` in order; return how many documents the first one matched (the fenced checkpoint).

    On MongoDB 8.0 (and SecantusDB) one bulkWrite command carries every collection's writes; an older server
    gets one bulk command per run of writes to the same collection."""
    if _one_command(session):
        every = session.client.bulk_write([w for _, w in writes], session=session, verbose_results=True)
        return int(every.update_results[0].matched_count)
    matched = []
    for model, run in itertools.groupby(writes, key=lambda write: write[0]):
        result = _collection(model).bulk_write([w for _, w in run], ordered=True, session=session)
        matched.append(result.matched_count)
    return matched[0]


def commit(effects: Effects, *, session: ClientSession, shard: int, epoch: int, last_entry: str) -> None:
    """Write the batch and move the checkpoint to `last_entry`, in one transaction on the engine's `session`
    (see `claim`); Fenced if the shard moved on."""
    # No read concern: the transaction reads nothing (the engine decided from memory); its writes are atomic,
    # and the fenced checkpoint update is what a second engine on the shard would conflict with.
    mark = {"last_entry": last_entry, "updated_at": moment(effects.at_ms)}
    checkpoint = UpdateOne({"shard": shard, "epoch": epoch}, {"$set": mark}, namespace=_namespaced(EngineShard))
    writes: list[tuple[Any, Write]] = [(EngineShard, checkpoint), *_batch_writes(effects)]
    with session.start_transaction(write_concern=WriteConcern("majority")):
        if _write_all(writes, session) != 1:  # raising here aborts the transaction: nothing is written
            raise Fenced(f"shard {shard}: epoch {epoch} is no longer the shard's")


# --- the other two writes ---------------------------------------------------------------------------------


def account_insert(*, user_id: ObjectId, cash: Decimal) -> ObjectId:
    """A new account (a trader): a document the engine has never seen, loaded by its prefetch on first use."""
    document = {
        "user_id": user_id,
        "cash": Decimal128(cash),
        "starting_cash": Decimal128(cash),
        "reserved_cash": Decimal128("0.00"),
        "invoice_sequence": 0,
        "created_at": to_milliseconds(timezone.now()),
    }
    return cast(ObjectId, _collection(Trader).insert_one(document).inserted_id)


def invoice_pdf_store(*, order_id: ObjectId, pdf: bytes, at_ms: int) -> bool:
    """Keep a confirmation's rendered PDF, once (False: it was stored already; a concurrent render lost)."""
    stored = _collection(Invoice).update_one(
        {"order_id": order_id, "status": {"$ne": Invoice.Status.READY}},
        {"$set": {"status": Invoice.Status.READY, "pdf": pdf, "ready_at": moment(at_ms)}},
    )
    return stored.modified_count == 1
