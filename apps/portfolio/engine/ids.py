"""Ids derived from the stream: a command decided twice (a replay after a crash) makes the same order.

A stream entry id is `<milliseconds>-<sequence>`, unique and increasing within its stream. An order's
ObjectId packs it with the shard: 4 bytes of seconds (ObjectId's own timestamp, so ids still sort by
time), 2 of the millisecond, 1 of the shard, 5 of the entry's sequence number.
"""

from bson import ObjectId

SEQUENCE_LIMIT = 1 << 40


def entry_position(entry: str) -> tuple[int, int]:
    """(milliseconds, sequence) of a stream entry id, for comparing entries."""
    milliseconds, _, sequence = entry.partition("-")
    return int(milliseconds), int(sequence or 0)


def order_id_at(entry: str, shard: int) -> ObjectId:
    milliseconds, sequence = entry_position(entry)
    if not 0 <= shard < 256 or sequence >= SEQUENCE_LIMIT:
        raise ValueError(f"entry {entry!r} of shard {shard} has no order id")
    seconds, millisecond = divmod(milliseconds, 1000)
    return ObjectId(
        seconds.to_bytes(4, "big") + millisecond.to_bytes(2, "big") + bytes([shard]) + sequence.to_bytes(5, "big")
    )
