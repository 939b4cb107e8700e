"""What L2 holds: this marker, the logical expiry, a newline, then the value as JSON (apps/core/codec.py).

Never pickles: a pickle read from Redis would run code chosen by whoever wrote it.
"""

from dataclasses import dataclass
from typing import Any

from apps.core import codec

ENVELOPE_MAGIC = b"json1 "


@dataclass
class Envelope:
    """An encoded value and its logical expiry (so L1 never outlives L2)."""

    expires_at: float
    value: bytes


def encode_envelope(value: Any, *, expires_at: float) -> bytes:
    return b"%s%r\n%s" % (ENVELOPE_MAGIC, expires_at, codec.dumps(value))


def decode_envelope(raw: bytes) -> Envelope | None:
    """The envelope in `raw`; None (a miss) for anything this codec did not write, e.g. an old pickle."""
    header, newline, value = raw.partition(b"\n")
    if not newline or not header.startswith(ENVELOPE_MAGIC):
        return None
    try:
        expires_at = float(header[len(ENVELOPE_MAGIC) :])
    except ValueError:
        return None
    return Envelope(expires_at, value)
