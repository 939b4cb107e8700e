"""What the dashboard needs on its first screen, in one read (Property 19: <= 3 API calls on load).

The page embeds this as JSON (zero API calls); `GET /api/v1/dashboard/bootstrap`
returns the same for a client that refreshes. Each part comes from the owning
app's selector in the shape of that app's own endpoint, so the page reads a
refreshed `GET /api/v1/portfolio` the same way; the trades panel adds each
trade's invoice status (`GET /api/v1/dashboard/orders`).
"""

import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User

from apps.analytics.schemas import AnalyticsOut
from apps.analytics.selectors import analytics_summary
from apps.core import account_events
from apps.core.clock import now_ms
from apps.leaderboard.selectors import leaderboard_top
from apps.market.feed.protocol import MAX_SYMBOLS_PER_CONNECTION
from apps.market.selectors import HistoryCursor, quotes_or_nothing, recent_history, sector_labels, symbol_rows
from apps.portfolio.schemas import OrderOut, PortfolioOut
from apps.portfolio.selectors import invoice_statuses, order_list, portfolio_for, trader_for_user

logger = logging.getLogger(__name__)

RECENT_ORDERS = 20
LEADERBOARD_TOP = 10
WEBSOCKET_PATH = "/ws/market/"


def market_rows() -> list[dict[str, Any]]:
    """Every listed symbol with its latest quote (one query, one MGET); opening prices while Redis is down."""
    symbols = symbol_rows()
    quotes = quotes_or_nothing([s["ticker"] for s in symbols])
    rows = []
    for symbol in symbols:
        opening = float(symbol["initial_price"])
        quote = quotes.get(symbol["ticker"]) or {"price": opening, "previous_close": opening}
        rows.append(
            {
                "symbol": symbol["ticker"],
                "name": symbol["name"],
                "sector": symbol["sector"],
                "active": symbol["active"],
                "price": quote["price"],
                "previous_close": quote.get("previous_close", opening),
                "change": quote.get("change", 0.0),
                "change_percent": quote.get("change_percent", 0.0),
                "volume": quote.get("volume", 0),
                "timestamp": quote.get("timestamp", 0),
            }
        )
    return rows


def recent_orders(*, user: User) -> list[dict[str, Any]]:
    """The newest trades (filled orders) in the shape of `GET /api/v1/orders`, plus each one's invoice status.

    Resting, cancelled and expired orders have their own panel (the open orders); the same one query
    as the unfiltered order list, filtered here."""
    orders = [o for o in order_list(trader=trader_for_user(user), limit=RECENT_ORDERS) if o.status == "filled"]
    statuses = invoice_statuses([o.pk for o in orders])
    return [
        {**OrderOut.of(order).model_dump(mode="json"), "invoice_status": statuses.get(order.pk)} for order in orders
    ]


def _side_panel(read: Callable[[], Any]) -> dict[str, Any] | None:
    """A side panel must not take the whole page down: on failure it shows as unavailable."""
    try:
        return dict(read())
    except Exception:
        logger.exception("dashboard: a side panel could not be read")
        return None


def _leaderboard() -> dict[str, Any]:
    page = leaderboard_top(limit=LEADERBOARD_TOP)
    return {"computed_at": page.computed_at, "entries": page.entries}


def _analytics() -> dict[str, Any]:
    return AnalyticsOut.model_validate(analytics_summary()).model_dump(mode="json")


def dashboard_bootstrap(*, user: User) -> dict[str, Any]:
    """The first screen: market with quotes, the trader's portfolio and orders, leaderboard, analytics.

    `account_seq`, read before the account, is the trader's last event number the page's data includes:
    the page resumes its account events after it (None: Redis could not say; the socket's ready frame then)."""
    account_seq = account_events.latest(user.pk)
    portfolio = PortfolioOut.model_validate(portfolio_for(trader_for_user(user)), from_attributes=True)
    return {
        "user": {"username": user.get_username(), "is_staff": user.is_staff},
        "sectors": [{"value": value, "label": label} for value, label in sector_labels().items()],
        "symbols": market_rows(),
        "portfolio": portfolio.model_dump(mode="json"),
        "orders": recent_orders(user=user),
        "leaderboard": _side_panel(_leaderboard),
        "analytics": _side_panel(_analytics),
        "websocket_path": WEBSOCKET_PATH,
        "max_subscriptions": MAX_SYMBOLS_PER_CONNECTION,
        "server_time": now_ms(),
        "account_seq": account_seq,
    }


def chart_history(*, symbol: str) -> dict[str, Any]:
    """The symbol's recent points from the Redis ring (oldest first), and the cursor to page back from them."""
    points = recent_history(symbol)
    before = HistoryCursor.after(points[0]).encode() if points else None
    return {"symbol": symbol, "points": points, "before": before}
