"""The matcher's in-memory book: a price takes out exactly the orders it crosses, best priced first."""

from apps.portfolio.book_feed import RestingOrder
from apps.portfolio.matching import OrderBook


def entry(order_id: str, side: str, kind: str, limit: int | None = None, stop: int | None = None) -> RestingOrder:
    return RestingOrder(order_id, "ACME", side, kind, limit, stop, False)


def test_a_price_takes_out_the_buys_at_or_above_it_and_the_sells_at_or_below_it() -> None:
    book = OrderBook()
    for order in [
        entry("b950", "buy", "limit", limit=950),
        entry("b900", "buy", "limit", limit=900),
        entry("s1000", "sell", "limit", limit=1000),
        entry("s930", "sell", "limit", limit=930),
    ]:
        book.add(order)
    assert [o.id for o in book.crossed("ACME", 940)] == ["b950", "s930"]
    assert [o.id for o in book.crossed("ACME", 940)] == []
    assert [o.id for o in book.crossed("ACME", 900)] == ["b900"]
    assert len(book) == 1 and "s1000" in book


def test_stops_trigger_on_the_far_side_and_a_removed_order_is_never_returned() -> None:
    book = OrderBook()
    book.add(entry("buy-stop", "buy", "stop", stop=1050))
    book.add(entry("sell-stop", "sell", "stop", stop=950))
    book.add(entry("gone", "sell", "stop", stop=960))
    book.remove("gone")
    assert book.crossed("ACME", 1000) == []
    assert [o.id for o in book.crossed("ACME", 940)] == ["sell-stop"]
    assert [o.id for o in book.crossed("ACME", 1050)] == ["buy-stop"]
    assert len(book) == 0


def test_a_triggered_stop_limit_moves_to_its_limit_list() -> None:
    book = OrderBook()
    waiting = RestingOrder("sl", "ACME", "buy", "stop_limit", 1010, 1000, False)
    book.add(waiting)
    assert book.crossed("ACME", 990) == []
    (taken,) = book.crossed("ACME", 1000)
    book.add(RestingOrder("sl", "ACME", "buy", "stop_limit", 1010, 1000, True))
    assert book.crossed("ACME", 1020) == [] and [o.id for o in book.crossed("ACME", 1010)] == ["sl"]
    assert taken.id == "sl"
