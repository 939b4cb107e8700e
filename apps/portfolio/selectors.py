"""Reads for portfolios and orders.

Valuing portfolios costs a constant number of round trips whatever the number
of traders or holdings (Property 2): one query for the traders, one for all
their holdings, one MGET for every price (`apps.market.selectors.latest_prices`).
"""

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, cast

import redis
from bson import Decimal128, ObjectId
from bson.errors import InvalidId
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection as default_connection
from django_mongodb_backend.base import DatabaseWrapper
from pymongo.errors import DuplicateKeyError

from apps.core.cache import cached
from apps.core.indexes import in_lists
from apps.market.selectors import latest_prices
from apps.portfolio.cache_keys import account_key, recent_orders_key, trader_key
from apps.portfolio.engine import journal
from apps.portfolio.models import Holding, Invoice, Order, Trader
from apps.portfolio.valuation import Portfolio, PortfolioValuation, valued_portfolio

connection = cast(DatabaseWrapper, default_connection)

logger = logging.getLogger(__name__)

ORDER_PAGE_MAX = 100
ONE_ROUND_TRIP_BATCH = 1_000_000  # the server caps a batch at 16 MB; all we read fits in one


def _prices(symbols: Iterable[str]) -> dict[str, Decimal]:
    """Latest prices in one MGET; an unreachable Redis values holdings at cost instead of failing."""
    try:
        return latest_prices(symbols)
    except redis.RedisError as error:
        logger.warning("quotes unavailable, valuing holdings at cost: %s", error)
        return {}


def _holding_documents(query: dict[str, Any]) -> list[dict[str, Any]]:
    """Holdings matching `query`, in one round trip.

    A sale to zero deletes the holding, so every stored one counts. Raw find with a large first
    batch: the ORM's cursor returns 101 documents and then needs a getMore, so its round trips
    would grow with the holdings count.
    """
    collection = connection.get_collection(Holding._meta.db_table)
    fields = {"trader_id": 1, "symbol": 1, "quantity": 1, "average_cost": 1, "reserved": 1}
    return list(collection.find(query, fields, sort=[("symbol", 1)], batch_size=ONE_ROUND_TRIP_BATCH))


def portfolio_values(trader_ids: Sequence[Any] | None = None) -> dict[Any, PortfolioValuation]:
    """Value many traders (None: every trader) at the latest prices: 3 queries and 1 MGET whatever their
    holdings, per 100 listed traders (every trader: 3 scans).

    A long `$in` would hold the embedded database's single lock for most of a second (the 900 traders of
    `bench/api_load.py`: 650 ms a query, stalling every order behind it); short lists or none keep each
    command to milliseconds. (Constant up to one 16 MB batch per query, about 100 000 holdings; beyond
    it the driver fetches more.)
    """
    if trader_ids is None:
        return _values_where(None)
    ids = [ObjectId(pk) for pk in trader_ids]
    values: dict[Any, PortfolioValuation] = {}
    for some in in_lists(ids):
        values |= _values_where(list(some))
    return values


def _values_where(ids: list[ObjectId] | None) -> dict[Any, PortfolioValuation]:
    def among(field: str, values: list[Any] | None) -> dict[str, Any]:
        return {} if values is None else {field: {"$in": values}}

    traders = list(
        connection.get_collection(Trader._meta.db_table).find(
            among("_id", ids), {"user_id": 1, "cash": 1, "starting_cash": 1}, batch_size=ONE_ROUND_TRIP_BATCH
        )
    )
    users = connection.get_collection(User._meta.db_table).find(
        among("_id", None if ids is None else [t["user_id"] for t in traders]),
        {"username": 1},
        batch_size=ONE_ROUND_TRIP_BATCH,
    )
    username_of = {u["_id"]: u["username"] for u in users}
    holdings_of: dict[ObjectId, list[dict[str, Any]]] = defaultdict(list)
    for held in _holding_documents(among("trader_id", ids)):
        holdings_of[held["trader_id"]].append(held)
    prices = _prices(h["symbol"] for held in holdings_of.values() for h in held)
    return {
        t["_id"]: valued_portfolio(
            trader_id=t["_id"],
            username=username_of.get(t["user_id"], ""),
            cash=t["cash"].to_decimal(),
            starting_cash=t["starting_cash"].to_decimal(),
            holdings=holdings_of[t["_id"]],
            prices=prices,
        )
        for t in traders
    }


def portfolio_for(trader: Trader) -> Portfolio:
    """One trader's portfolio: holdings in one query, every price in one MGET."""
    holdings = _holding_documents({"trader_id": trader.pk})
    return valued_portfolio(
        trader_id=trader.pk,
        username=trader.user.get_username(),
        cash=trader.cash,
        starting_cash=trader.starting_cash,
        holdings=holdings,
        prices=_prices(h["symbol"] for h in holdings),
        reserved_cash=trader.reserved_cash,
    )


def held_symbols(account_id: ObjectId) -> list[str]:
    """The symbols the account holds shares of, as last committed (one indexed query)."""
    return sorted(h["symbol"] for h in _holding_documents({"trader_id": account_id}) if h["quantity"] > 0)


def object_id(value: str) -> ObjectId | None:
    """The ObjectId in `value`, or None when it is not one (which callers answer with a 404)."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


def order_get(*, trader: Trader, order_id: str) -> Order | None:
    """The trader's own order; another trader's or a malformed id is None."""
    pk = object_id(order_id)
    # By _id alone, owner checked here: a filter on two fields is an $and, which SecantusDB never indexes.
    order = None if pk is None else Order.objects.filter(pk=pk).first()
    return order if order is not None and order.trader_id == trader.pk else None


def order_list(
    *,
    trader: Trader,
    limit: int,
    after: tuple[Any, ObjectId] | None = None,
    symbol: str | None = None,
    side: str | None = None,
    status: str | None = None,
) -> list[Order]:
    """The trader's orders newest first (created_at, then id: a total, stable order), after a keyset cursor."""
    orders = Order.objects.filter(trader=trader)
    if status:
        orders = orders.filter(status=status)
    if symbol:
        orders = orders.filter(symbol=symbol)
    if side:
        orders = orders.filter(side=side)
    if after is not None:
        created_at, pk = after
        orders = orders.filter(created_at__lt=created_at) | orders.filter(created_at=created_at, pk__lt=pk)
    return list(orders.order_by("-created_at", "-id")[: min(limit, ORDER_PAGE_MAX + 1)])  # +1: "is there more"


def order_by_client_order_id(*, trader: Trader, client_order_id: str) -> Order | None:
    """The trader's order with this idempotency key, if any: one indexed round trip when there is none.

    A flat filter, not the ORM's $and (SecantusDB indexes only flat filters).
    """
    found = connection.get_collection(Order._meta.db_table).find_one(
        {"client_order_id": client_order_id, "trader_id": trader.pk}, {"_id": 1}
    )
    return None if found is None else Order.objects.get(pk=found["_id"])


def invoice_for_order(*, trader: Trader, order_id: str) -> Invoice | None:
    """The invoice of the trader's own trade (None for another trader's or an unknown trade)."""
    pk = object_id(order_id)
    invoice = None if pk is None else Invoice.objects.filter(order_id=pk).first()
    return invoice if invoice is not None and invoice.trader_id == trader.pk else None


def invoice_with_trade(**lookup: Any) -> Invoice | None:
    """The invoice matching `lookup` with its order, trader and user loaded, each by primary key.

    Not select_related: on SecantusDB its $lookup joins scan the joined collections
    (measured: 604 ms with 2 000 orders against 30 ms for these reads by key), so their
    cost would grow with every trade ever made.
    """
    invoice = Invoice.objects.filter(**lookup).first()
    if invoice is None:
        return None
    invoice.order = Order.objects.get(pk=invoice.order_id)
    trader = Trader.objects.get(pk=invoice.trader_id)
    trader.user = User.objects.get(pk=trader.user_id)
    invoice.trader = trader
    return invoice


def trader_for_user(user: User) -> Trader:
    """The user's trader profile, created with starting cash on first use (e.g. a superuser).

    A read that may create the account (through the journal, the one writer of accounts: a new account is a
    document the engine has never seen); it lives here so that selectors need not import services (a cycle)."""
    trader = Trader.objects.filter(user=user).first()
    if trader is None:
        with contextlib.suppress(DuplicateKeyError):  # a concurrent first use created it
            journal.account_insert(user_id=user.pk, cash=Decimal(settings.TRADER_STARTING_CASH))
        trader = Trader.objects.get(user=user)
    trader.user = user  # already loaded: spare a query wherever the trader's name is shown
    return trader


def recent_orders(user: User, *, limit: int) -> list[Order]:
    """The trader's newest `limit` orders (at most a page and one more): the unfiltered first page.

    Through the read-your-writes cache like the account: a trader's order list is read far
    more often than it changes, and every order invalidates it after commit.
    """
    newest = cached(
        "profiles", recent_orders_key(user.pk), lambda: order_list(trader=trader_ref(user), limit=ORDER_PAGE_MAX + 1)
    )
    return newest[:limit]


def trader_account(user: User) -> dict[str, Any]:
    """The trader's account (name, staff flag, ids, cash, holdings) through the cache, as plain values.

    "profiles" is a read-your-writes namespace: it never enters the in-process layer,
    and every order invalidates the key after commit, so a trader sees their new cash
    and holdings at once. A cached account costs one Redis GET and no MongoDB call.
    """

    def load() -> dict[str, Any]:
        trader = trader_for_user(user)
        holdings = _holding_documents({"trader_id": trader.pk})
        return {
            "username": user.get_username(),
            "is_staff": user.is_staff,
            "trader_id": str(trader.pk),
            "cash": str(trader.cash),
            "reserved_cash": str(trader.reserved_cash),
            "starting_cash": str(trader.starting_cash),
            "holdings": [
                {
                    "symbol": h["symbol"],
                    "quantity": int(h["quantity"]),
                    "average_cost": str(h["average_cost"]),
                    "reserved": int(h.get("reserved") or 0),
                }
                for h in holdings
            ],
        }

    return cached("profiles", account_key(user.pk), load)


def trader_profile(user: User) -> dict[str, Any]:
    """The trader's name, staff flag, cash and buying power (GET /me), from the cached account."""
    account = trader_account(user)
    cash, reserved = Decimal(account["cash"]), Decimal(account.get("reserved_cash", "0.00"))
    return {
        "username": account["username"],
        "is_staff": account["is_staff"],
        "cash": account["cash"],
        "reserved_cash": str(reserved),
        "buying_power": str(cash - reserved),
    }


def trader_of(user: User) -> Trader:
    """The user's trader (its id, cash and name) from the cached account: no database call when cached."""
    account = trader_account(user)
    trader = Trader(
        pk=ObjectId(account["trader_id"]),
        user_id=user.pk,
        cash=Decimal(account["cash"]),
        starting_cash=Decimal(account["starting_cash"]),
    )
    trader._state.adding = False
    trader.user = user
    return trader


def trader_ref(user: User) -> Trader:
    """The user's trader to write to (an order): its id alone, without its cash or holdings.

    Cached apart from the account, which every order invalidates: an order then costs no
    account reload (two MongoDB reads) before the next one. Its `cash` is not the trader's.
    """
    trader_id = cached("profiles", trader_key(user.pk), lambda: str(trader_for_user(user).pk))
    trader = Trader(pk=ObjectId(trader_id), user_id=user.pk)
    trader._state.adding = False
    trader.user = user
    return trader


def portfolio_of(user: User) -> Portfolio:
    """The trader's portfolio from the cached account, valued at the latest prices (one MGET)."""
    account = trader_account(user)
    holdings = [{**h, "average_cost": Decimal128(h["average_cost"])} for h in account["holdings"]]
    return valued_portfolio(
        trader_id=ObjectId(account["trader_id"]),
        username=account["username"],
        cash=Decimal(account["cash"]),
        starting_cash=Decimal(account["starting_cash"]),
        holdings=holdings,
        prices=_prices(h["symbol"] for h in holdings),
        reserved_cash=Decimal(account.get("reserved_cash", "0.00")),
    )


def trades_in_id_range(*, after: ObjectId | None, upto: ObjectId, limit: int) -> list[dict[str, Any]]:
    """Trades whose invoice id is in (after, upto], oldest first, at most `limit` (analytics' counters).

    Each fill writes its invoice in its own transaction, so the invoice's id orders trades by when they
    filled: a limit order resting since long before the counters' watermark is counted when it fills.
    Index lookups: the invoices' id range, then their orders by id, 100 at a time (`in_lists`). `pk` is the
    invoice's id."""
    invoices = Invoice.objects.filter(pk__lte=upto)
    if after is not None:
        invoices = invoices.filter(pk__gt=after)
    batch = list(invoices.order_by("pk").values("pk", "order_id")[:limit])
    if not batch:
        return []
    fields = ("pk", "trader_id", "symbol", "quantity", "amount", "created_at")
    orders = {
        row["pk"]: row
        for some in in_lists([b["order_id"] for b in batch])
        for row in Order.objects.filter(pk__in=some).values(*fields)
    }
    return [{**orders[b["order_id"]], "pk": b["pk"]} for b in batch if b["order_id"] in orders]


def invoice_statuses(order_ids: list[Any]) -> dict[Any, str]:
    """Whether each listed order's confirmation can be downloaded, by order id (one query; orders without an
    invoice are absent). A pending invoice is ready too: its PDF is made on first download (ADR 0008)."""
    rows = Invoice.objects.filter(order_id__in=order_ids).values_list("order_id", "status")
    return {order_id: Invoice.Status.READY if status == Invoice.Status.PENDING else status for order_id, status in rows}
