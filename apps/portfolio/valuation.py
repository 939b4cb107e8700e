"""Portfolio valuation: a trader's cash and holdings valued at given prices (no I/O; the selectors read)."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bson import ObjectId

CENT = Decimal("0.01")


@dataclass(frozen=True)
class HoldingValuation:
    symbol: str
    quantity: int
    average_cost: Decimal
    last_price: Decimal
    priced: bool  # False: no quote yet (or Redis unreachable), so last_price is the average cost
    reserved: int = 0  # shares held by resting sell orders

    @property
    def market_value(self) -> Decimal:
        return (self.last_price * self.quantity).quantize(CENT)

    @property
    def cost_basis(self) -> Decimal:
        return (self.average_cost * self.quantity).quantize(CENT)

    @property
    def unrealised_pnl(self) -> Decimal:
        return self.market_value - self.cost_basis


@dataclass(frozen=True)
class Portfolio:
    trader_id: ObjectId
    username: str
    cash: Decimal
    starting_cash: Decimal
    holdings: tuple[HoldingValuation, ...]
    reserved_cash: Decimal = Decimal("0.00")  # held by resting buy orders

    @property
    def buying_power(self) -> Decimal:
        """Cash not held by resting buy orders: what a new buy may spend (never negative)."""
        return self.cash - self.reserved_cash

    @property
    def holdings_value(self) -> Decimal:
        return sum((h.market_value for h in self.holdings), Decimal("0.00"))

    @property
    def unrealised_pnl(self) -> Decimal:
        return sum((h.unrealised_pnl for h in self.holdings), Decimal("0.00"))

    @property
    def total_value(self) -> Decimal:
        return self.cash + self.holdings_value

    @property
    def return_percent(self) -> Decimal:
        """Total return since the account opened, in percent of the starting cash."""
        if not self.starting_cash:
            return Decimal("0.00")
        return ((self.total_value - self.starting_cash) / self.starting_cash * 100).quantize(CENT)


# A valuation of many traders is the same shape; the name says which question it answers.
PortfolioValuation = Portfolio


def valued_portfolio(
    *,
    trader_id: ObjectId,
    username: str,
    cash: Decimal,
    starting_cash: Decimal,
    holdings: Sequence[dict[str, Any]],
    prices: dict[str, Decimal],
    reserved_cash: Decimal = Decimal("0.00"),
) -> Portfolio:
    """A trader's holdings valued at `prices` (a holding without a price at its average cost)."""
    valued = []
    for held in holdings:
        average_cost = held["average_cost"].to_decimal()
        valued.append(
            HoldingValuation(
                symbol=held["symbol"],
                quantity=int(held["quantity"]),
                average_cost=average_cost,
                last_price=prices.get(held["symbol"], average_cost),
                priced=held["symbol"] in prices,
                reserved=int(held.get("reserved") or 0),
            )
        )
    return Portfolio(
        trader_id=trader_id,
        username=username,
        cash=cash,
        starting_cash=starting_cash,
        holdings=tuple(valued),
        reserved_cash=reserved_cash,
    )
