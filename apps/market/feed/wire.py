"""Pre-encoded WebSocket frames written straight to the socket of a uvicorn connection (issue 17).

At 10 000 clients the feed's cost is the per-connection send: through ASGI each
frame is a message dict, a coroutine, and the server's protocol building and
serialising the frame anew for every connection. A frame the hub shares between
connections can be encoded once as WebSocket bytes (a server frame is not
masked: header + payload) and written to each connection's transport directly,
without awaiting anything.

Only where that is exactly what the server would have written: uvicorn's
`websockets-sansio` protocol (the Procfile's), its connection open, no close sent,
no extension negotiated (per-message-deflate is off). Anywhere else (daphne,
Channels' test communicator, another uvicorn protocol) `direct_socket` gives None
and the hub sends through ASGI as before.

Backpressure is the hub's: it writes only to a socket whose server-side buffer
is empty (the kernel took everything written before), so a slow client never
gets a queue of old prices, only the latest ones once it has caught up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from websockets.protocol import State

TEXT_FRAME = 0x81  # FIN + opcode 1 (text)
_SHORT_HEADERS = [bytes((TEXT_FRAME, size)) for size in range(126)]  # payloads under 126 bytes: 2-byte header
_PROTOCOL_CLASS = "uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol"


def encode_frames(frames: Sequence[str]) -> bytes:
    """Text frames as one buffer of unmasked server frames (the frames are ASCII, at most 1 024 bytes)."""
    parts = []
    for frame in frames:
        payload = frame.encode()
        size = len(payload)
        parts.append(_SHORT_HEADERS[size] if size < 126 else bytes((TEXT_FRAME, 126)) + size.to_bytes(2, "big"))
        parts.append(payload)
    return b"".join(parts)


class DirectSocket:
    """One uvicorn sansio connection: how much its server buffer holds, and a write into it."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def buffered(self) -> int | None:
        """Bytes written but not yet taken by the kernel, or None once the connection is closing or closed."""
        protocol = self._protocol
        transport = protocol.transport
        if protocol.close_sent or protocol.disconnected or protocol.conn.state is not State.OPEN:
            return None
        if transport.is_closing():
            return None
        return int(transport.get_write_buffer_size())

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)


def direct_socket(server_send: Any) -> DirectSocket | None:
    """The direct writer behind an ASGI server's `send`, when it is uvicorn's sansio protocol; else None."""
    protocol = getattr(server_send, "__self__", None)
    cls = type(protocol)
    if f"{cls.__module__}.{cls.__qualname__}" != _PROTOCOL_CLASS:
        return None
    conn = getattr(protocol, "conn", None)
    if getattr(protocol, "transport", None) is None or conn is None or getattr(conn, "extensions", None):
        return None
    return DirectSocket(protocol)
