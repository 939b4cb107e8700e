"""Limit and stop orders over HTTP: validation names the field, cancel, list by status, buying power."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.portfolio.test_api import bearer, post_order


def resting_buy(token: str, price: str = "9.50", quantity: int = 10, **extra: object) -> dict:
    body = {"symbol": "ACME", "side": "buy", "quantity": quantity, "type": "limit", "limit_price": price, **extra}
    response = post_order(token, body)
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_resting_limit_order_shows_its_terms_and_no_fill(market, make_trader) -> None:
    _, token = make_trader("1000.00")
    order = resting_buy(token, time_in_force="gtc")
    assert (order["type"], order["limit_price"], order["time_in_force"], order["status"]) == (
        "limit",
        "9.50",
        "gtc",
        "open",
    )
    unfilled = (order["price"], order["amount"], order["invoice_url"], order["reserved_cash"])
    assert unfilled == (None, None, None, "95.00")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"type": "limit"}, "limit_price"),
        ({"type": "stop", "limit_price": "9.00", "stop_price": "9.00"}, "limit_price"),
        ({"type": "stop_limit", "limit_price": "9.00"}, "stop_price"),
        ({"type": "market", "stop_price": "9.00"}, "stop_price"),
        ({"type": "limit", "limit_price": "9.001"}, "limit_price"),
        ({"type": "limit", "limit_price": 0}, "limit_price"),
        ({"type": "limit", "limit_price": "lots"}, "limit_price"),
        ({"type": "trailing"}, "type"),
        ({"type": "limit", "limit_price": "9.00", "time_in_force": "opg"}, "time_in_force"),
        ({"type": "stop", "stop_price": "11.00", "time_in_force": "ioc"}, "time_in_force"),
        ({"type": "stop_limit", "stop_price": "9.00", "limit_price": "9.00", "time_in_force": "fok"}, "time_in_force"),
    ],
)
def test_bad_order_terms_are_422_naming_the_field(market, make_trader, extra, field) -> None:
    _, token = make_trader()
    response = post_order(token, {"symbol": "ACME", "side": "buy", "quantity": 1, **extra})
    assert response.status_code == 422
    assert field in str(response.json())


def test_an_ioc_limit_that_cannot_fill_answers_201_cancelled_and_is_listed_so(market, make_trader) -> None:
    _, token = make_trader("1000.00")
    order = resting_buy(token, time_in_force="ioc")
    assert (order["status"], order["reason"], order["time_in_force"], order["reserved_cash"]) == (
        "cancelled",
        "ioc_unfilled",
        "ioc",
        "0.00",
    )
    listed = Client().get("/api/v1/orders?status=cancelled", **bearer(token)).json()["data"]
    assert [o["id"] for o in listed] == [order["id"]]
    assert Client().get("/api/v1/me", **bearer(token)).json()["buying_power"] == "1000.00"


def test_me_and_portfolio_show_buying_power_and_reservations(market, make_trader) -> None:
    _, token = make_trader("1000.00")
    post_order(token, {"symbol": "ACME", "side": "buy", "quantity": 10})
    post_order(token, {"symbol": "ACME", "side": "sell", "quantity": 4, "type": "limit", "limit_price": "12.00"})
    resting_buy(token, price="9.00", quantity=10)
    me = Client().get("/api/v1/me", **bearer(token)).json()
    assert (me["cash"], me["reserved_cash"], me["buying_power"]) == ("900.00", "90.00", "810.00")
    portfolio = Client().get("/api/v1/portfolio", **bearer(token)).json()
    assert (portfolio["reserved_cash"], portfolio["buying_power"]) == ("90.00", "810.00")
    assert [(h["symbol"], h["quantity"], h["reserved"]) for h in portfolio["holdings"]] == [("ACME", 10, 4)]


def test_cancel_is_idempotent_and_a_filled_order_is_409_with_its_state(market, make_trader) -> None:
    _, token = make_trader("1000.00")
    order = resting_buy(token)
    first = Client().delete(f"/api/v1/orders/{order['id']}", **bearer(token))
    again = Client().delete(f"/api/v1/orders/{order['id']}", **bearer(token))
    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == again.json()["status"] == "cancelled"
    assert Client().get("/api/v1/me", **bearer(token)).json()["buying_power"] == "1000.00"
    filled = post_order(token, {"symbol": "ACME", "side": "buy", "quantity": 1}).json()
    conflict = Client().delete(f"/api/v1/orders/{filled['id']}", **bearer(token))
    assert conflict.status_code == 409
    assert (conflict.json()["code"], conflict.json()["order"]["status"]) == ("already_filled", "filled")


def test_cancelling_an_unknown_or_anothers_order_is_404(market, make_trader) -> None:
    _, token = make_trader()
    _, other = make_trader()
    order = resting_buy(token)
    assert Client().delete(f"/api/v1/orders/{order['id']}", **bearer(other)).status_code == 404
    assert Client().delete("/api/v1/orders/not-an-id", **bearer(token)).status_code == 404


def test_orders_list_by_status_in_keyset_pages(market, make_trader) -> None:
    _, token = make_trader("10000.00")
    open_ids = [resting_buy(token, price="9.00", quantity=1)["id"] for _ in range(3)]
    post_order(token, {"symbol": "ACME", "side": "buy", "quantity": 1})
    cancelled = resting_buy(token, price="8.00", quantity=1)["id"]
    Client().delete(f"/api/v1/orders/{cancelled}", **bearer(token))
    first = Client().get("/api/v1/orders?status=open&limit=2", **bearer(token)).json()
    second = Client().get(f"/api/v1/orders?status=open&limit=2&cursor={first['nextCursor']}", **bearer(token)).json()
    assert [o["id"] for o in first["data"] + second["data"]] == open_ids[::-1] and second["nextCursor"] is None
    by_status = {
        status: [o["status"] for o in Client().get(f"/api/v1/orders?status={status}", **bearer(token)).json()["data"]]
        for status in ("filled", "cancelled", "expired")
    }
    assert by_status == {"filled": ["filled"], "cancelled": ["cancelled"], "expired": []}
    assert Client().get("/api/v1/orders?status=pending", **bearer(token)).status_code == 422
