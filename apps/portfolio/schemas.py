"""The portfolio app's output schemas that other apps show too (the dashboard embeds them).

Apps read each other's data through selectors and services and show it in the owner's shapes from here,
never from another app's api.py.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from ninja import Field, Schema

from apps.portfolio.models import Order


def trade_fields(order: Order) -> dict[str, Any]:
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
    price: Decimal
    amount: Decimal
    status: str
    created_at: datetime
    invoice_url: str

    @staticmethod
    def of(order: Order) -> "OrderOut":
        return OrderOut(
            id=str(order.pk),
            client_order_id=order.client_order_id,
            **trade_fields(order),
            status=order.status,
            created_at=order.created_at,
            invoice_url=f"/api/v1/trades/{order.pk}/invoice",
        )


class HoldingOut(Schema):
    symbol: str
    quantity: int
    average_cost: Decimal
    last_price: Decimal
    priced: bool = Field(description="False when no quote exists yet: last_price is then the average cost.")
    market_value: Decimal
    cost_basis: Decimal
    unrealised_pnl: Decimal


class PortfolioOut(Schema):
    cash: Decimal
    starting_cash: Decimal
    holdings_value: Decimal
    unrealised_pnl: Decimal
    total_value: Decimal
    return_percent: Decimal
    holdings: list[HoldingOut]
