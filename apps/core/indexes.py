"""Index and query-shape helpers shared by every app."""

from collections.abc import Iterator, Sequence
from typing import TypeVar

from django.db import models

T = TypeVar("T")

# SecantusDB matches `$in` in time growing with the square of its list (900 ids: 650 ms for one command,
# which holds its single lock meanwhile and stalls every order behind it); lists of at most IN_LIST_MAX
# keep each such query to milliseconds (100 ids: 12 ms). Pinned in tests/portfolio/test_selectors.py.
IN_LIST_MAX = 100


def in_lists(values: Sequence[T]) -> Iterator[Sequence[T]]:
    """`values` in consecutive lists of at most IN_LIST_MAX, for `$in` filters."""
    for start in range(0, len(values), IN_LIST_MAX):
        yield values[start : start + IN_LIST_MAX]


class LookupIndex(models.Index):
    """A plain index for a lookup that a unique constraint already guards.

    django-mongodb-backend builds every unique index with a partialFilterExpression,
    and SecantusDB's planner never uses a partial index (it also uses an index only
    when the index holds every field of the query): without these, each lookup by a
    unique key scans the whole collection. Key order differs from the unique index
    so both can exist on any MongoDB. Pinned in tests/portfolio/test_indexes.py.
    """
