"""The portfolio app's output schemas that other apps show too (the dashboard embeds them).

Apps read each other's data through selectors and services and show it in the owner's shapes from here,
never from another app's api.py.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from ninja import Field, Schema

from apps.portfolio.models import Order


def trade_fields(order: Order) -> dict[str, Any]:  # price, amount: None while the order rests
    """What every view of an order shows the same way: the order list, a certified trade."""
    return {
        "symbol": order.symbol,
        "side": order.side,
        "quantity": order.quantity,
        "price": order.price,
        "amount": order.amount,
    }


class OrderOut(Schema):
    id: str
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    type: str = Field(description="market, limit, stop or stop_limit")
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str = Field(description="day, gtc, ioc or fok")
    price: Decimal | None = Field(description="The fill price; null until the order fills.")
    amount: Decimal | None = Field(description="price x quantity; null until the order fills.")
    status: str = Field(description="open, filled, cancelled or expired")
    reason: str = Field("", description="Why the order was cancelled or expired, when it was not your request.")
    reserved_cash: Decimal = Field(description="Cash the order holds while open (a buy: limit price x quantity).")
    created_at: datetime
    expires_at: datetime | None = Field(None, description="When an open day order expires.")
    closed_at: datetime | None = Field(None, description="When it was filled, cancelled or expired.")
    invoice_url: str | None = Field(description="The trade confirmation; null unless filled.")

    @staticmethod
    def of(order: Order) -> "OrderOut":
        filled = order.status == Order.Status.FILLED
        return OrderOut(
            id=str(order.pk),
            client_order_id=order.client_order_id,
            **trade_fields(order),
            type=order.type,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            time_in_force=order.time_in_force,
            status=order.status,
            reason=order.reason,
            reserved_cash=order.reserved_cash if order.status == Order.Status.OPEN else Decimal("0.00"),
            created_at=order.created_at,
            expires_at=order.expires_at if order.status == Order.Status.OPEN else None,
            closed_at=order.closed_at,
            invoice_url=f"/api/v1/trades/{order.pk}/invoice" if filled else None,
        )


class HoldingOut(Schema):
    symbol: str
    quantity: int
    average_cost: Decimal
    last_price: Decimal
    priced: bool = Field(description="False when no quote exists yet: last_price is then the average cost.")
    reserved: int = Field(0, description="Shares held by your resting sell orders (not for sale meanwhile).")
    market_value: Decimal
    cost_basis: Decimal
    unrealised_pnl: Decimal


class PortfolioOut(Schema):
    cash: Decimal
    reserved_cash: Decimal = Field(description="Cash held by your resting buy orders.")
    buying_power: Decimal = Field(description="cash - reserved_cash: what a new buy order may spend.")
    starting_cash: Decimal
    holdings_value: Decimal
    unrealised_pnl: Decimal
    total_value: Decimal
    return_percent: Decimal
    holdings: list[HoldingOut]
