"""The engine's in-memory book (apps/portfolio/engine/book.py): a price takes out exactly the orders it
crosses, best priced first; a removed order never comes back; day orders come out when they expire."""

from bson import ObjectId

from apps.portfolio.engine.book import OrderBook
from apps.portfolio.engine.state import OrderState

IDS: dict[str, ObjectId] = {}


def oid(name: str) -> ObjectId:
    return IDS.setdefault(name, ObjectId())


def entry(
    name: str,
    side: str,
    kind: str,
    limit: int | None = None,
    stop: int | None = None,
    *,
    triggered: bool = False,
    expires_ms: int | None = None,
) -> OrderState:
    return OrderState(
        id=oid(name),
        account_id=oid("account"),
        client_order_id=name,
        symbol="ACME",
        side=side,
        quantity=1,
        type=kind,
        time_in_force="gtc" if expires_ms is None else "day",
        created_ms=0,
        limit_cents=limit,
        stop_cents=stop,
        triggered=triggered,
        expires_ms=expires_ms,
    )


def names(orders: list[OrderState]) -> list[str]:
    return [order.client_order_id for order in orders]


def test_a_price_takes_out_the_buys_at_or_above_it_and_the_sells_at_or_below_it() -> None:
    book: OrderBook[OrderState] = OrderBook()
    for order in [
        entry("b950", "buy", "limit", limit=950),
        entry("b900", "buy", "limit", limit=900),
        entry("s1000", "sell", "limit", limit=1000),
        entry("s930", "sell", "limit", limit=930),
    ]:
        book.add(order)
    assert names(book.crossed("ACME", 940)) == ["b950", "s930"]
    assert names(book.crossed("ACME", 940)) == []
    assert names(book.crossed("ACME", 900)) == ["b900"]
    assert len(book) == 1 and oid("s1000") in book


def test_the_best_priced_order_of_a_side_comes_first() -> None:
    book: OrderBook[OrderState] = OrderBook()
    for name, limit in [("b900", 900), ("b990", 990), ("b950", 950)]:
        book.add(entry(name, "buy", "limit", limit=limit))
    assert names(book.crossed("ACME", 800)) == ["b990", "b950", "b900"]


def test_a_price_of_another_symbol_takes_out_nothing() -> None:
    book: OrderBook[OrderState] = OrderBook()
    book.add(entry("b950", "buy", "limit", limit=950))
    assert book.crossed("BOLT", 1) == []
    assert len(book) == 1


def test_stops_trigger_on_the_far_side_and_a_removed_order_is_never_returned() -> None:
    book: OrderBook[OrderState] = OrderBook()
    book.add(entry("buy-stop", "buy", "stop", stop=1050))
    book.add(entry("sell-stop", "sell", "stop", stop=950))
    book.add(entry("gone", "sell", "stop", stop=960))
    book.remove(oid("gone"))
    assert book.crossed("ACME", 1000) == []
    assert names(book.crossed("ACME", 940)) == ["sell-stop"]
    assert names(book.crossed("ACME", 1050)) == ["buy-stop"]
    assert len(book) == 0


def test_a_triggered_stop_limit_moves_to_its_limit_list() -> None:
    book: OrderBook[OrderState] = OrderBook()
    waiting = entry("sl", "buy", "stop_limit", limit=1010, stop=1000)
    book.add(waiting)
    assert book.crossed("ACME", 990) == []
    (taken,) = book.crossed("ACME", 1000)
    assert taken is waiting
    taken.triggered = True
    book.add(taken)
    assert book.crossed("ACME", 1020) == [] and names(book.crossed("ACME", 1010)) == ["sl"]


def test_a_moved_order_is_taken_out_once_from_its_new_list_only() -> None:
    book: OrderBook[OrderState] = OrderBook()
    order = entry("sl", "buy", "stop_limit", limit=1010, stop=1000)
    book.add(order)
    order.triggered = True
    book.add(order)  # moved without being taken out: its stop slot is stale
    assert names(book.crossed("ACME", 1005)) == ["sl"]
    assert book.crossed("ACME", 1000) == [] and len(book) == 0


def test_expired_takes_out_the_orders_due_soonest_first_and_skips_removed_ones() -> None:
    book: OrderBook[OrderState] = OrderBook()
    book.add(entry("late", "buy", "limit", limit=900, expires_ms=3_000))
    book.add(entry("soon", "sell", "limit", limit=1100, expires_ms=1_000))
    book.add(entry("cancelled", "buy", "limit", limit=800, expires_ms=500))
    book.add(entry("gtc", "buy", "limit", limit=700))
    book.remove(oid("cancelled"))
    assert book.next_expiry_ms() == 1_000
    assert book.expired(999) == []
    assert names(book.expired(3_000)) == ["soon", "late"]
    assert book.next_expiry_ms() is None
    assert len(book) == 1 and oid("gtc") in book


def test_a_crossed_order_no_longer_expires() -> None:
    book: OrderBook[OrderState] = OrderBook()
    book.add(entry("day", "buy", "limit", limit=900, expires_ms=1_000))
    assert names(book.crossed("ACME", 900)) == ["day"]
    assert book.expired(2_000) == [] and book.next_expiry_ms() is None
