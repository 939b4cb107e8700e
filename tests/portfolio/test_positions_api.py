"""Cancel all, close a position and close all over HTTP, against the real order engine (issue 27, item 5)."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.portfolio.models import Holding, Order
from tests.portfolio.test_api import bearer, post_order


def delete(token: str, path: str):
    return Client().delete(path, **bearer(token))


def bought(token: str, symbol: str, quantity: int) -> dict:
    response = post_order(token, {"symbol": symbol, "side": "buy", "quantity": quantity})
    assert response.status_code == 201, response.json()
    return response.json()


def resting(token: str, symbol: str, side: str, price: str, quantity: int = 2) -> dict:
    body = {"symbol": symbol, "side": side, "quantity": quantity, "type": "limit", "limit_price": price}
    response = post_order(token, {**body, "time_in_force": "gtc"})
    assert response.status_code == 201 and response.json()["status"] == "open", response.json()
    return response.json()


def buying_power(token: str) -> str:
    return Client().get("/api/v1/me", **bearer(token)).json()["buying_power"]


def test_cancel_all_cancels_every_open_order_in_one_request_and_then_nothing(market, make_trader) -> None:
    _, token = make_trader("1000.00")
    mine = [resting(token, "ACME", "buy", "9.00")["id"], resting(token, "BOLT", "buy", "20.00")["id"]]
    assert buying_power(token) == "942.00"
    response = delete(token, "/api/v1/orders")
    assert response.status_code == 200, response.json()
    cancelled = response.json()["cancelled"]
    assert sorted(o["id"] for o in cancelled) == sorted(mine)
    assert {o["status"] for o in cancelled} == {"cancelled"} and buying_power(token) == "1000.00"
    assert delete(token, "/api/v1/orders").json() == {"cancelled": []}


def test_cancel_all_of_one_symbol_leaves_the_others(market, make_trader) -> None:
    trader, token = make_trader("1000.00")
    resting(token, "ACME", "buy", "9.00")
    kept = resting(token, "BOLT", "buy", "20.00")
    cancelled = delete(token, "/api/v1/orders?symbol=acme").json()["cancelled"]
    assert [o["symbol"] for o in cancelled] == ["ACME"]
    assert list(Order.objects.filter(trader=trader, status="open").values_list("id", flat=True)) == [
        Order.objects.get(pk=kept["id"]).pk
    ]


def test_closing_a_position_sells_a_percentage_then_the_rest_then_there_is_none(market, make_trader) -> None:
    trader, token = make_trader("1000.00")
    bought(token, "ACME", 10)
    half = delete(token, "/api/v1/positions/ACME?percent=50")
    assert half.status_code == 201, half.json()
    assert (half.json()["side"], half.json()["quantity"], half.json()["status"]) == ("sell", 5, "filled")
    rest = delete(token, "/api/v1/positions/ACME")
    assert (rest.status_code, rest.json()["quantity"]) == (201, 5)
    assert not Holding.objects.filter(trader=trader).exists()
    gone = delete(token, "/api/v1/positions/ACME")
    assert (gone.status_code, gone.json()["code"], gone.json()["field"]) == (404, "no_position", "symbol")


def test_shares_held_by_a_resting_sell_are_refused_unless_cancel_orders(market, make_trader) -> None:
    trader, token = make_trader("1000.00")
    bought(token, "ACME", 10)
    sell = resting(token, "ACME", "sell", "12.00", quantity=8)
    refused = delete(token, "/api/v1/positions/ACME")
    assert (refused.status_code, refused.json()["code"]) == (409, "insufficient_holding")
    assert "cancel_orders" in refused.json()["detail"]
    assert Order.objects.get(pk=sell["id"]).status == "open"  # a refusal cancels nothing
    closed = delete(token, "/api/v1/positions/ACME?cancel_orders=true")
    assert (closed.status_code, closed.json()["quantity"], closed.json()["status"]) == (201, 10, "filled")
    cancelled = Order.objects.get(pk=sell["id"])
    assert (cancelled.status, cancelled.reason) == ("cancelled", "position_closed")
    assert not Holding.objects.filter(trader=trader).exists()


def test_a_close_is_exactly_once_per_client_order_id(market, make_trader) -> None:
    _, token = make_trader("1000.00")
    bought(token, "ACME", 10)
    first = delete(token, "/api/v1/positions/ACME?quantity=3&client_order_id=close-1")
    again = delete(token, "/api/v1/positions/ACME?quantity=3&client_order_id=close-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Order.objects.filter(side="sell").count() == 1


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("?quantity=2&percent=50", 422, "percent"),
        ("?percent=0", 422, "percent"),
        ("?percent=101", 422, "percent"),
        ("?quantity=0", 422, "quantity"),
        ("?quantity=lots", 422, "quantity"),
        ("?percent=5", 422, "percent"),  # 5 % of 10 shares is less than one
        ("?quantity=11", 409, "quantity"),
    ],
)
def test_bad_close_parameters_are_refused_naming_the_field(market, make_trader, query, status, field) -> None:
    _, token = make_trader("1000.00")
    bought(token, "ACME", 10)
    response = delete(token, f"/api/v1/positions/ACME{query}")
    assert response.status_code == status, response.json()
    assert field in str(response.json())
    assert Order.objects.filter(side="sell").count() == 0


def test_closing_an_unknown_symbol_is_422_naming_it(market, make_trader) -> None:
    _, token = make_trader()
    response = delete(token, "/api/v1/positions/NOPE")
    assert (response.status_code, response.json()["field"]) == (422, "symbol")


def test_close_all_sells_every_position_and_lists_each_outcome(market, make_trader) -> None:
    trader, token = make_trader("1000.00")
    bought(token, "ACME", 4)
    bought(token, "BOLT", 2)
    resting(token, "BOLT", "sell", "30.00", quantity=1)
    refused = delete(token, "/api/v1/positions").json()["closed"]
    assert [(c["symbol"], c["status"], c.get("code")) for c in refused] == [
        ("ACME", 201, None),
        ("BOLT", 409, "insufficient_holding"),
    ]
    closed = delete(token, "/api/v1/positions?cancel_orders=true").json()["closed"]
    assert [(c["symbol"], c["status"], c["order"]["quantity"]) for c in closed] == [("BOLT", 201, 2)]
    assert not Holding.objects.filter(trader=trader).exists()
    assert delete(token, "/api/v1/positions").json() == {"closed": []}
