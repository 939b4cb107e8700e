"""The dashboard page (`/`) and its API: first-screen data, the chart, the trades panel."""

from typing import Any, cast

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from ninja import Path, Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from apps.dashboard.selectors import chart_history, dashboard_bootstrap, recent_orders
from apps.market.selectors import symbol_exists


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The trader's dashboard; its first-screen data is embedded, so loading it costs no API call."""
    bootstrap = dashboard_bootstrap(user=cast(User, request.user))  # login_required: a real user
    naive = request.GET.get("render") == "naive"
    return render(request, "dashboard.html", {"bootstrap": bootstrap, "render_mode": "naive" if naive else "optimised"})


router = Router(tags=["dashboard"])


class BootstrapOut(Schema):
    user: dict[str, Any]
    sectors: list[dict[str, str]]
    symbols: list[dict[str, Any]]
    portfolio: dict[str, Any]
    orders: list[Any]
    leaderboard: Any = None
    analytics: Any = None
    websocket_path: str
    max_subscriptions: int
    server_time: int
    account_seq: int | None = None


class ChartPath(Schema):
    ticker: str = Field(pattern=r"^[A-Za-z0-9.\-]{1,10}$")


@router.get("/dashboard/bootstrap", response=BootstrapOut, summary="Everything the dashboard's first screen shows")
def bootstrap(request: HttpRequest) -> dict[str, Any]:
    return dashboard_bootstrap(user=cast(User, request.user))  # the router's auth guarantees a real user


@router.get(
    "/dashboard/chart/{ticker}",
    summary="A symbol's recent points for the chart (the Redis ring), with the `before` cursor of older history",
)
def chart(request: HttpRequest, path: Path[ChartPath]) -> dict[str, Any]:
    ticker = path.ticker.upper()
    if not symbol_exists(ticker):
        raise HttpError(404, f"ticker: unknown symbol {ticker!r}")
    return chart_history(symbol=ticker)


@router.get("/dashboard/orders", summary="Your newest orders with their invoice status (the trades panel)")
def orders(request: HttpRequest) -> list[dict[str, Any]]:
    return recent_orders(user=cast(User, request.user))  # the router's auth guarantees a real user
