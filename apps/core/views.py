from typing import Any, cast

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from ninja import Path, Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from apps.core.dashboard import chart_history, dashboard_bootstrap, recent_orders
from apps.core.health import recent_health
from apps.market.models import Symbol


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every dependency answers, 503 naming the ones that do not.

    Results are at most HEALTH_CACHE_SECONDS old. Details (addresses, error text,
    timings) are for staff; anyone else learns the status and which service failed.
    """
    results = await recent_health.results()
    failed = [r.name for r in results if not r.ok]
    body: dict[str, object] = {"status": "ok" if not failed else "degraded", "failed": failed}
    user = await request.auser()
    if getattr(user, "is_staff", False):
        body["checks"] = {r.name: {"ok": r.ok, "detail": r.detail, "ms": r.milliseconds} for r in results}
    response = JsonResponse(body, status=503 if failed else 200)
    response["Cache-Control"] = "no-store"
    return response


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
    if not Symbol.objects.filter(ticker=ticker).exists():
        raise HttpError(404, f"ticker: unknown symbol {ticker!r}")
    return chart_history(symbol=ticker)


@router.get("/dashboard/orders", summary="Your newest orders with their invoice status (the trades panel)")
def orders(request: HttpRequest) -> list[dict[str, Any]]:
    return recent_orders(user=cast(User, request.user))  # the router's auth guarantees a real user
