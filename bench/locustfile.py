"""A realistic trader mix for locust (not part of `make bench`; `bench/orders.py` is).

    pip install locust==2.47.0            # in a separate virtualenv: it is not a project dependency
    TRADER_TOKENS=tok1,tok2,... locust -f bench/locustfile.py --host http://127.0.0.1:8000

Each simulated user is one trader (bearer token from TRADER_TOKENS, round robin; create
them with `manage.py create_trader`). Per session they mostly browse the market, look at
a chart, read their portfolio and orders, and now and then buy or sell one lot: about
one order per ten requests, as on a busy trading screen. A trader acts every 1-5 s, so a
single trader stays far below the API rate limit of 100 requests per minute.
"""

from __future__ import annotations

import itertools
import os
import random
import uuid

from locust import HttpUser, between, task

TOKENS = itertools.cycle([t for t in os.environ.get("TRADER_TOKENS", "").split(",") if t])


class Trader(HttpUser):
    wait_time = between(1, 5)

    def on_start(self) -> None:
        token = next(TOKENS, None)
        if token is None:
            raise RuntimeError("set TRADER_TOKENS to a comma-separated list of API tokens")
        self.client.headers["Authorization"] = f"Bearer {token}"
        page = self.client.get("/api/v1/symbols", params={"limit": 100}, name="/api/v1/symbols").json()
        self.tickers = [s["ticker"] for s in page.get("data", [])] or ["ACME"]
        self.held: dict[str, int] = {}

    @task(30)
    def browse_market(self) -> None:
        self.client.get("/api/v1/symbols", params={"limit": 100}, name="/api/v1/symbols")

    @task(15)
    def look_at_a_symbol(self) -> None:
        ticker = random.choice(self.tickers)
        self.client.get(f"/api/v1/symbols/{ticker}", name="/api/v1/symbols/[ticker]")

    @task(8)
    def chart_a_symbol(self) -> None:
        ticker = random.choice(self.tickers)
        self.client.get(f"/api/v1/symbols/{ticker}/history", name="/api/v1/symbols/[ticker]/history")

    @task(15)
    def read_portfolio(self) -> None:
        holdings = self.client.get("/api/v1/portfolio").json().get("holdings", [])
        self.held = {h["symbol"]: h["quantity"] for h in holdings}

    @task(8)
    def read_orders(self) -> None:
        self.client.get("/api/v1/orders", params={"limit": 20}, name="/api/v1/orders")

    @task(5)
    def leaderboard(self) -> None:
        self.client.get("/api/v1/leaderboard")

    @task(6)
    def buy(self) -> None:
        self._order("buy", random.choice(self.tickers), random.randint(1, 20))

    @task(4)
    def sell(self) -> None:
        if self.held:
            symbol, quantity = random.choice(list(self.held.items()))
            self._order("sell", symbol, random.randint(1, quantity))

    def _order(self, side: str, symbol: str, quantity: int) -> None:
        body = {"symbol": symbol, "side": side, "quantity": quantity, "client_order_id": uuid.uuid4().hex}
        with self.client.post("/api/v1/orders", json=body, name="/api/v1/orders [POST]", catch_response=True) as r:
            if r.status_code in (200, 201):
                self.held[symbol] = self.held.get(symbol, 0) + (quantity if side == "buy" else -quantity)
                r.success()
            elif r.status_code == 409:
                r.success()  # a business refusal (cash, holding) is a correct answer, not a failure
