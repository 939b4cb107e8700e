"""A tick: one price change of one symbol, as the simulator makes it and every consumer reads it.

Prices are floats already rounded to the 0.01 tick size: exact enough to carry
and 8x cheaper than Decimal on the 500-ticks/s path. Money code converts with
`tick_price_decimal` (Decimal(str(x)) is exact for two-decimal floats).
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

PRICE_STEP = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Tick:
    symbol: str
    price: float
    previous_close: float
    volume: int  # shares traded in the session so far
    timestamp: int  # server time of the tick, milliseconds since the epoch

    @property
    def change(self) -> float:
        return round(self.price - self.previous_close, 2)

    @property
    def change_percent(self) -> float:
        if not self.previous_close:
            return 0.0
        return round((self.price - self.previous_close) / self.previous_close * 100, 2)

    def as_update(self) -> dict[str, Any]:
        """The WebSocket update shape (source document's StockUpdate)."""
        return {
            "symbol": self.symbol,
            "price": self.price,
            "change": self.change,
            "change_percent": self.change_percent,
            "volume": self.volume,
            "timestamp": self.timestamp,
        }

    def as_fields(self) -> dict[str, str]:
        """Flat string fields for a Redis stream entry or hash."""
        return {
            "symbol": self.symbol,
            "price": repr(self.price),
            "previous_close": repr(self.previous_close),
            "volume": str(self.volume),
            "timestamp": str(self.timestamp),
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str] | dict[bytes, bytes]) -> "Tick":
        text = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }
        return cls(
            symbol=text["symbol"],
            price=float(text["price"]),
            previous_close=float(text["previous_close"]),
            volume=int(text["volume"]),
            timestamp=int(text["timestamp"]),
        )


def tick_price_decimal(price: float) -> Decimal:
    return Decimal(repr(price)).quantize(PRICE_STEP)
