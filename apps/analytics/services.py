"""Writes for analytics: advance the counters past new trades and rebuild the summary (a beat job, every minute).

Nothing here aggregates a whole collection (Property 13): trades are read as an
`_id` range after the watermark, volatility comes from the Redis rings (the
last VOLATILITY_POINTS points of each symbol, one pipelined round trip), prices
from the quotes, top performers from the leaderboard snapshot.
"""

import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import redis
from bson import ObjectId
from django.utils import timezone
from django_mongodb_backend import transaction

from apps.analytics.models import AnalyticsState
from apps.core.cache import cache_put
from apps.leaderboard.selectors import top_by_return
from apps.market.selectors import ring_prices, sector_by_ticker, sector_labels
from apps.portfolio.selectors import trades_in_id_range

logger = logging.getLogger(__name__)

# A trade's invoice gets its ObjectId when its fill inserts it, and that transaction commits within
# milliseconds; counting only ids older than this never skips one still in flight.
SETTLE_SECONDS = 10
ACTIVE_WINDOW = timedelta(hours=24)
TOP_COUNT = 5
VOLATILITY_POINTS = 60
ORDER_BATCH = 5_000


@dataclass(frozen=True)
class TradeFact:
    trader_id: str
    symbol: str
    quantity: int
    amount: Decimal
    created_at: datetime


@dataclass
class TradeCounters:
    total_trades: int = 0
    total_volume: int = 0
    total_value: Decimal = Decimal("0.00")
    trades_by_symbol: dict[str, int] = field(default_factory=dict)
    volume_by_symbol: dict[str, int] = field(default_factory=dict)
    last_trade_by_trader: dict[str, str] = field(default_factory=dict)  # ISO times

    def add(self, trades: Iterable[TradeFact]) -> None:
        for trade in trades:
            self.total_trades += 1
            self.total_volume += trade.quantity
            self.total_value += trade.amount
            self.trades_by_symbol[trade.symbol] = self.trades_by_symbol.get(trade.symbol, 0) + 1
            self.volume_by_symbol[trade.symbol] = self.volume_by_symbol.get(trade.symbol, 0) + trade.quantity
            seen = self.last_trade_by_trader.get(trade.trader_id)
            stamp = trade.created_at.isoformat()
            if seen is None or datetime.fromisoformat(seen) < trade.created_at:
                self.last_trade_by_trader[trade.trader_id] = stamp

    def active_traders(self, now: datetime) -> int:
        since = now - ACTIVE_WINDOW
        return sum(1 for stamp in self.last_trade_by_trader.values() if datetime.fromisoformat(stamp) >= since)

    def forget_inactive(self, now: datetime) -> None:
        since = now - ACTIVE_WINDOW
        self.last_trade_by_trader = {
            trader: stamp
            for trader, stamp in self.last_trade_by_trader.items()
            if datetime.fromisoformat(stamp) >= since
        }


def volatility(prices: Sequence[float]) -> float:
    """Standard deviation of point-to-point returns, in percent (0 for fewer than 3 points)."""
    returns = [(b - a) / a * 100 for a, b in itertools.pairwise(prices) if a > 0]
    if len(returns) < 2:
        return 0.0
    mean = sum(returns) / len(returns)
    return math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))


def _counters(state: AnalyticsState) -> TradeCounters:
    return TradeCounters(
        total_trades=state.total_trades,
        total_volume=state.total_volume,
        total_value=Decimal(state.total_value),
        trades_by_symbol=dict(state.trades_by_symbol),
        volume_by_symbol=dict(state.volume_by_symbol),
        last_trade_by_trader=dict(state.last_trade_by_trader),
    )


def _new_trades(after: str, upto: ObjectId) -> Iterable[TradeFact]:
    """Trades whose invoice id is in (after, upto], oldest first, in bounded batches (an index range on _id)."""
    lower = ObjectId(after) if after else None
    while True:
        rows = trades_in_id_range(after=lower, upto=upto, limit=ORDER_BATCH)
        for row in rows:
            yield TradeFact(str(row["trader_id"]), row["symbol"], row["quantity"], row["amount"], row["created_at"])
        if len(rows) < ORDER_BATCH:
            return
        lower = rows[-1]["pk"]


def _ring_volatility(symbols: Sequence[str]) -> dict[str, float]:
    try:
        rings = ring_prices(list(symbols), VOLATILITY_POINTS)
    except redis.RedisError as error:
        logger.warning("analytics: rings unavailable, volatility left out: %s", error)
        return {}
    result = {}
    for symbol, prices in rings.items():
        if len(prices) >= 3:
            result[symbol] = round(volatility(prices), 4)
    return result


def build_summary(
    counters: TradeCounters,
    *,
    now: datetime,
    sector_of: Mapping[str, str],
    volatility_of: Mapping[str, float],
    top_performers: list[dict[str, Any]],
) -> dict[str, Any]:
    """The served summary, from precomputed parts only."""
    most_traded = sorted(counters.trades_by_symbol.items(), key=lambda item: (-item[1], item[0]))[:TOP_COUNT]
    most_volatile = sorted(volatility_of.items(), key=lambda item: (-item[1], item[0]))[:TOP_COUNT]
    labels = sector_labels()
    sectors: dict[str, dict[str, Any]] = {
        value: {"sector": value, "label": label, "symbols": 0, "trades": 0, "volume": 0, "volatility": 0.0}
        for value, label in labels.items()
    }
    for symbol, sector in sector_of.items():
        row = sectors.setdefault(
            sector, {"sector": sector, "label": sector, "symbols": 0, "trades": 0, "volume": 0, "volatility": 0.0}
        )
        row["symbols"] += 1
        row["trades"] += counters.trades_by_symbol.get(symbol, 0)
        row["volume"] += counters.volume_by_symbol.get(symbol, 0)
        row["volatility"] += volatility_of.get(symbol, 0.0)
    for row in sectors.values():
        row["volatility"] = round(row["volatility"] / row["symbols"], 4) if row["symbols"] else 0.0
    return {
        "total_trades": counters.total_trades,
        "total_volume": counters.total_volume,
        "total_value": str(counters.total_value),
        "active_traders_24h": counters.active_traders(now),
        "top_performers": top_performers,
        "most_traded": [
            {"symbol": s, "trades": n, "volume": counters.volume_by_symbol.get(s, 0)} for s, n in most_traded
        ],
        "most_volatile": [{"symbol": s, "volatility": v} for s, v in most_volatile],
        "sectors": list(sectors.values()),
    }


def analytics_refresh(*, now: datetime | None = None) -> AnalyticsState:
    """Count trades since the watermark, rebuild the summary, store both and refresh the cached copy."""
    now = now or timezone.now()
    state, _ = AnalyticsState.objects.get_or_create(name="market")
    counters = _counters(state)
    upto = ObjectId.from_datetime(now - timedelta(seconds=SETTLE_SECONDS))
    if not state.watermark or ObjectId(state.watermark) < upto:
        counters.add(_new_trades(state.watermark, upto))
        state.watermark = str(upto)
    counters.forget_inactive(now)
    sector_of = sector_by_ticker()
    summary = build_summary(
        counters,
        now=now,
        sector_of=sector_of,
        volatility_of=_ring_volatility(sorted(sector_of)),
        top_performers=top_by_return(limit=TOP_COUNT),
    )
    state.total_trades = counters.total_trades
    state.total_volume = counters.total_volume
    state.total_value = counters.total_value
    state.trades_by_symbol = counters.trades_by_symbol
    state.volume_by_symbol = counters.volume_by_symbol
    state.last_trade_by_trader = counters.last_trade_by_trader
    state.summary = summary
    state.computed_at = now
    with transaction.atomic():
        state.save()
    cache_put("analytics", "summary", {**summary, "computed_at": now})
    return state
