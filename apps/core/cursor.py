"""The one keyset cursor: a page's position as (epoch milliseconds, tie-breaking key), opaque to clients.

Encoded as unpadded URL-safe base64 of "<milliseconds>:<key>". `decode` refuses anything `encode`
could not have made (ValueError), before it can reach a query: a client may send any text.
Used by the orders list (apps/portfolio/api.py) and the tick history (apps/market/selectors.py).
"""

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Self

KEY_MAX = 64


@dataclass(frozen=True)
class KeysetCursor:
    timestamp: int  # epoch milliseconds
    key: str

    NAME: ClassVar[str] = "cursor"  # in the error: "not a <NAME>"
    # Past datetime's range a timestamp raised OSError/OverflowError deep in a query (a 500): refuse it here.
    LATEST_MS: ClassVar[int] = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp() * 1000)

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.timestamp}:{self.key}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Self:
        """Parse a cursor from `encode`; ValueError for anything else."""
        refused = f"not a {cls.NAME}"
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError(refused) from None
        timestamp, separator, key = raw.partition(":")
        if not separator or not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 20:
            raise ValueError(refused)
        if not 0 < len(key) <= KEY_MAX or not key.isprintable():
            raise ValueError(refused)
        if int(timestamp) > cls.LATEST_MS:
            raise ValueError(f"{refused}: timestamp out of range")
        return cls(int(timestamp), key)
