"""The trader's private events (order accepted, filled, cancelled, expired; invoice ready).

A stub on this branch: the order side calls it at every point where an order is accepted, filled,
cancelled or expired, after the commit. The real channel (per-trader sequence numbers, a bounded
history, delivery on the WebSocket) comes with the account event channel (issue 19, dashboard side).
"""

from typing import Any

ACCOUNT_EVENTS = ("order_accepted", "order_filled", "order_cancelled", "order_expired", "invoice_ready")


def publish_account_event(trader_id: int, event: str, payload: dict[str, Any]) -> None:
    """Send `event` with `payload` (the order's fields, new cash and buying_power) to the trader's own channel."""
