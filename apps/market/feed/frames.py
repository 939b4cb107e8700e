"""Server-to-client frames of the market feed, each at most 1 024 bytes encoded (Property 23).

Frames are assembled from already-encoded JSON pieces (the publisher's compact
update JSON, JSON-encoded tickers) so a tick is serialised once, by the
publisher, however many connections receive it. Everything here is ASCII
(`json.dumps` escapes the rest), so a frame's length in characters is its size
in bytes.
"""

import json
from collections.abc import Sequence
from typing import Any

MAX_FRAME_BYTES = 1024


def encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def pack_frames(prefix: str, items: Sequence[str], suffix: str) -> list[str]:
    """`prefix + ",".join(items) + suffix`, split into as few frames as keep each within MAX_FRAME_BYTES.

    An item that cannot fit even alone is left out (our own publisher never makes one).
    No items gives one frame with an empty list: an acknowledgement must still be sent.
    """
    budget = MAX_FRAME_BYTES - len(prefix) - len(suffix)
    frames: list[str] = []
    chunk: list[str] = []
    used = 0
    for item in items:
        size = len(item) + (1 if chunk else 0)  # the comma before every item but the first
        if used + size > budget and chunk:
            frames.append(prefix + ",".join(chunk) + suffix)
            chunk, used, size = [], 0, len(item)
        if size <= budget:
            chunk.append(item)
            used += size
    if chunk or not frames:
        frames.append(prefix + ",".join(chunk) + suffix)
    return frames


def update_frames(updates: Sequence[str], *, timestamp: int, batch_id: int) -> list[str]:
    """`stock_updates` frames for encoded updates of one batch (Property 6); split frames share the batchId."""
    return pack_frames(
        '{"type":"stock_updates","updates":[', updates, f'],"timestamp":{timestamp},"batchId":{batch_id}}}'
    )


def subscriptions_frames(kind: str, symbols: Sequence[str], *, timestamp: int) -> list[str]:
    """An acknowledgement (`subscribed`, `unsubscribed`, `pong`) listing the connection's subscriptions."""
    return pack_frames(
        f'{{"type":{json.dumps(kind)},"symbols":[', [json.dumps(s) for s in symbols], f'],"timestamp":{timestamp}}}'
    )


def notice_frame(code: str, message: str, *, timestamp: int) -> str:
    """A notice: the server tells the client something about its feed (e.g. its updates are being conflated)."""
    return encode({"type": "notice", "code": code, "message": message, "timestamp": timestamp})


def error_frame(code: str, message: str, *, timestamp: int) -> str:
    """An error frame; a message quoting client input is shortened until the frame fits."""
    frame = encode({"type": "error", "code": code, "message": message, "timestamp": timestamp})
    while len(frame) > MAX_FRAME_BYTES:
        # escapes (\uXXXX) make the encoded excess larger than the characters behind it; cut at least that much
        message = message[: max(0, len(message) - (len(frame) - MAX_FRAME_BYTES) - 3)] + "..."
        frame = encode({"type": "error", "code": code, "message": message, "timestamp": timestamp})
    return frame
