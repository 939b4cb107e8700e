"""Guarded writes: a conditional update that takes cash or shares only while they are free.

The filter bounds the field from below (`available`, served by the guard's index); what other orders
reserve is checked on the document the write returns (`still_free`). A write that found nothing, or took
something reserved, raises the caller's refusal, and the order's transaction rolls the write back.
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bson import Decimal128
from pymongo import ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.collection import Collection


def available(field: str, at_least: Decimal | int, *, released: Decimal | int = 0) -> dict[str, Any]:
    """The filter part of a guarded write: `field` (+ what this write releases) covers what it takes.

    What other orders reserve is checked on the document the write returns (`still_free`): an `$expr`
    comparing two fields in the filter makes SecantusDB scan the whole collection (tests/portfolio/
    test_indexes.py), while this bound uses the guard's index."""
    bound = Decimal(at_least) - Decimal(released)
    return {field: {"$gte": Decimal128(bound) if isinstance(at_least, Decimal) else int(bound)}}


def still_free(document: dict[str, Any], field: str, reserved: str) -> bool:
    """After a guarded write: nothing that other orders reserve was taken (`field` >= `reserved`)."""

    def number(value: object) -> Decimal:
        return value.to_decimal() if isinstance(value, Decimal128) else Decimal(str(value or 0))

    return number(document.get(field)) >= number(document.get(reserved))


def update_while_free(
    collection: Collection,
    match: dict[str, Any],
    update: dict[str, Any],
    *,
    free: tuple[str, str],
    projection: dict[str, int],
    session: ClientSession | None,
    refusal: Callable[[], Exception],
) -> dict[str, Any]:
    """One find_one_and_update of `match` (its guard included) returning the document after it; raises
    `refusal()` when nothing matched or the write left `free[0]` below what is reserved (`free[1]`)."""
    document = collection.find_one_and_update(
        match, update, projection=projection, return_document=ReturnDocument.AFTER, session=session
    )
    if document is None or not still_free(document, *free):
        raise refusal()
    return dict(document)
