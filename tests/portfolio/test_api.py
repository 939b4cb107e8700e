"""The trading API over HTTP (Django test client): status codes, shapes, pagination, isolation."""

import json

import pytest
from django.test import Client

from apps.portfolio.models import Order


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def post_order(token: str, body: object, client: Client | None = None):
    raw = body if isinstance(body, str) else json.dumps(body)
    return (client or Client()).post("/api/v1/orders", raw, content_type="application/json", **bearer(token))


def test_a_new_order_is_201_and_its_replay_is_200_with_the_same_order(market, make_trader) -> None:
    _, token = make_trader()
    body = {"symbol": "ACME", "side": "buy", "quantity": 5, "client_order_id": "abc"}
    created = post_order(token, body)
    replayed = post_order(token, body)
    assert created.status_code == 201 and replayed.status_code == 200
    assert created.json() == replayed.json()
    assert created.json()["price"] == "10.00" and created.json()["amount"] == "50.00"
    assert Order.objects.count() == 1


def test_an_order_without_client_order_id_gets_one_generated(market, make_trader) -> None:
    _, token = make_trader()
    first = post_order(token, {"symbol": "ACME", "side": "buy", "quantity": 1}).json()
    second = post_order(token, {"symbol": "ACME", "side": "buy", "quantity": 1}).json()
    assert first["client_order_id"] and first["client_order_id"] != second["client_order_id"]


def test_a_reused_client_order_id_with_another_body_is_409_naming_the_field(market, make_trader) -> None:
    _, token = make_trader()
    post_order(token, {"symbol": "ACME", "side": "buy", "quantity": 5, "client_order_id": "abc"})
    response = post_order(token, {"symbol": "BOLT", "side": "buy", "quantity": 5, "client_order_id": "abc"})
    assert response.status_code == 409
    assert response.json()["code"] == "client_order_id_conflict"
    assert response.json()["field"] == "client_order_id"
    assert "symbol" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"symbol": "NOPE", "side": "buy", "quantity": 1}, 422, "unknown_symbol", "symbol"),
        ({"symbol": "HALT", "side": "buy", "quantity": 1}, 409, "symbol_halted", "symbol"),
        ({"symbol": "NOQ", "side": "buy", "quantity": 1}, 409, "no_quote", "symbol"),
        ({"symbol": "ACME", "side": "buy", "quantity": 10_001}, 409, "insufficient_cash", "quantity"),
        ({"symbol": "ACME", "side": "sell", "quantity": 1}, 409, "insufficient_holding", "quantity"),
    ],
)
def test_business_refusals_are_json_with_code_and_field(market, make_trader, body, status, code, field) -> None:
    _, token = make_trader()
    response = post_order(token, body)
    assert response.status_code == status
    assert response.json()["code"] == code and response.json()["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"side": "buy", "quantity": 1}, "symbol"),
        ({"symbol": "ACME", "side": "short", "quantity": 1}, "side"),
        ({"symbol": "ACME", "side": "buy", "quantity": 0}, "quantity"),
        ({"symbol": "ACME", "side": "buy", "quantity": 1_000_001}, "quantity"),
        ({"symbol": "ACME", "side": "buy", "quantity": 1.5}, "quantity"),
        ({"symbol": "ACME", "side": "buy", "quantity": "10"}, "quantity"),
        ({"symbol": "ACME", "side": "buy", "quantity": True}, "quantity"),
        ({"symbol": "ACME", "side": "buy", "quantity": 1, "client_order_id": "x" * 49}, "client_order_id"),
        ({"symbol": "ACME", "side": "buy", "quantity": 1, "client_order_id": ""}, "client_order_id"),
        ({"symbol": "A" * 11, "side": "buy", "quantity": 1}, "symbol"),
    ],
)
def test_a_malformed_body_is_422_naming_the_field(market, make_trader, body, field) -> None:
    _, token = make_trader()
    response = post_order(token, body)
    assert response.status_code == 422
    assert field in json.dumps(response.json()["detail"])
    assert not Order.objects.exists()


@pytest.mark.parametrize("raw", ["{not json", "[]", "null", '"text"'])
def test_a_body_that_is_not_an_object_is_a_client_error(market, make_trader, raw) -> None:
    _, token = make_trader()
    response = post_order(token, raw)
    assert 400 <= response.status_code < 500
    assert not Order.objects.exists()


def test_orders_page_newest_first_with_a_stable_keyset_cursor(market, make_trader) -> None:
    _, token = make_trader()
    for n in range(7):
        post_order(
            token, {"symbol": "ACME" if n % 2 else "BOLT", "side": "buy", "quantity": 1, "client_order_id": str(n)}
        )
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = Client().get("/api/v1/orders", query, **bearer(token)).json()
        seen += [o["client_order_id"] for o in page["data"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == ["6", "5", "4", "3", "2", "1", "0"] and pages == 3


def test_orders_filter_by_symbol_and_side(market, make_trader) -> None:
    _, token = make_trader()
    post_order(token, {"symbol": "ACME", "side": "buy", "quantity": 2})
    post_order(token, {"symbol": "BOLT", "side": "buy", "quantity": 1})
    post_order(token, {"symbol": "ACME", "side": "sell", "quantity": 1})
    client = Client()
    assert [o["side"] for o in client.get("/api/v1/orders", {"symbol": "acme"}, **bearer(token)).json()["data"]] == [
        "sell",
        "buy",
    ]
    sells = client.get("/api/v1/orders", {"side": "sell"}, **bearer(token)).json()["data"]
    assert [(o["symbol"], o["side"]) for o in sells] == [("ACME", "sell")]


@pytest.mark.parametrize(
    "query",
    [{"limit": 101}, {"limit": 0}, {"limit": "many"}, {"side": "hold"}, {"cursor": "garbage!"}, {"cursor": "MTIz"}],
)
def test_bad_list_queries_are_422(market, make_trader, query) -> None:
    _, token = make_trader()
    response = Client().get("/api/v1/orders", query, **bearer(token))
    assert response.status_code == 422


def test_a_trader_never_sees_or_touches_another_traders_orders_portfolio_or_invoices(market, make_trader) -> None:
    _, alice = make_trader(name="alice")
    _, bob = make_trader(name="bob")
    order = post_order(alice, {"symbol": "ACME", "side": "buy", "quantity": 4}).json()
    client = Client()
    assert client.get(f"/api/v1/orders/{order['id']}", **bearer(alice)).status_code == 200
    assert client.get(f"/api/v1/orders/{order['id']}", **bearer(bob)).status_code == 404
    assert client.get("/api/v1/orders", **bearer(bob)).json()["data"] == []
    assert client.get(f"/api/v1/trades/{order['id']}/invoice", **bearer(bob)).status_code == 404
    assert client.get("/api/v1/portfolio", **bearer(bob)).json()["holdings"] == []
    # Bob cannot sell Alice's shares, and reusing her client_order_id creates his own order.
    assert post_order(bob, {"symbol": "ACME", "side": "sell", "quantity": 1}).status_code == 409
    mine = post_order(
        bob, {"symbol": "ACME", "side": "buy", "quantity": 1, "client_order_id": order["client_order_id"]}
    )
    assert mine.status_code == 201 and mine.json()["id"] != order["id"]
    assert client.get("/api/v1/portfolio", **bearer(alice)).json()["holdings"][0]["quantity"] == 4


@pytest.mark.parametrize("order_id", ["not-an-id", "0" * 24, "zzzzzzzzzzzzzzzzzzzzzzzz"])
def test_unknown_or_malformed_ids_are_404(market, make_trader, order_id) -> None:
    _, token = make_trader()
    assert Client().get(f"/api/v1/orders/{order_id}", **bearer(token)).status_code == 404
    assert Client().get(f"/api/v1/trades/{order_id}/invoice", **bearer(token)).status_code == 404


def test_the_portfolio_shows_cash_holdings_pnl_and_return(market, make_trader) -> None:
    _, token = make_trader("1000.00")
    post_order(token, {"symbol": "BOLT", "side": "buy", "quantity": 10})
    body = Client().get("/api/v1/portfolio", **bearer(token)).json()
    assert body["cash"] == "745.00"
    assert body["holdings"] == [
        {
            "symbol": "BOLT",
            "quantity": 10,
            "average_cost": "25.5000",
            "last_price": "25.50",
            "priced": True,
            "reserved": 0,
            "market_value": "255.00",
            "cost_basis": "255.00",
            "unrealised_pnl": "0.00",
        }
    ]
    assert (body["total_value"], body["return_percent"]) == ("1000.00", "0.00")


def test_the_invoice_is_the_pdf_from_the_first_download_rendered_once(market, make_trader) -> None:
    from apps.portfolio.models import Invoice

    _, token = make_trader()
    order = post_order(token, {"symbol": "ACME", "side": "buy", "quantity": 1}).json()
    assert Invoice.objects.get(order_id=order["id"]).status == "pending"
    first = Client().get(order["invoice_url"], **bearer(token))
    assert first.status_code == 200 and first["Content-Type"] == "application/pdf"
    assert first.content.startswith(b"%PDF")
    stored = Invoice.objects.get(order_id=order["id"])
    assert stored.status == "ready" and bytes(stored.pdf) == first.content
    again = Client().get(order["invoice_url"], **bearer(token))
    assert again.status_code == 200 and again.content == first.content


def test_browser_sessions_need_the_csrf_token_to_place_orders(market, make_trader) -> None:
    make_trader(name="carol", password="pw-12345")
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="carol", password="pw-12345")
    body = json.dumps({"symbol": "ACME", "side": "buy", "quantity": 1})
    refused = client.post("/api/v1/orders", body, content_type="application/json")
    assert refused.status_code in (401, 403) and not Order.objects.exists()
    client.get("/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post("/api/v1/orders", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201
    assert client.get("/api/v1/portfolio").json()["holdings"][0]["symbol"] == "ACME"


def test_anonymous_requests_are_401(market) -> None:
    assert Client().get("/api/v1/portfolio").status_code == 401
    assert Client().post("/api/v1/orders", "{}", content_type="application/json").status_code == 401


def test_a_trader_sees_their_new_cash_right_after_an_order_through_the_cached_profile(market, make_trader) -> None:
    """Property 34 for the profile: the order invalidates the cached profile after commit."""
    _, token = make_trader(cash="1000.00")
    assert Client().get("/api/v1/me", **bearer(token)).json()["cash"] == "1000.00"
    assert post_order(token, {"symbol": "ACME", "side": "buy", "quantity": 3}).status_code == 201
    assert Client().get("/api/v1/me", **bearer(token)).json()["cash"] == "970.00"


def test_an_order_with_a_field_the_api_does_not_know_is_422_naming_it_and_fills_nothing(market, make_trader) -> None:
    """An order term the API does not offer must not be dropped into a market fill (issue 14, finding 14)."""
    _, token = make_trader()
    body = {"symbol": "ACME", "side": "buy", "quantity": 1, "type": "limit", "limit_price": 5.0, "trail_percent": 2}
    response = post_order(token, body)
    assert response.status_code == 422
    named = {tuple(error["loc"])[-1] for error in response.json()["detail"]}
    assert named == {"trail_percent"}
    assert not Order.objects.exists()


def test_the_openapi_schema_says_the_order_body_forbids_unknown_fields(db) -> None:
    schemas = Client().get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert schemas["OrderIn"]["additionalProperties"] is False
