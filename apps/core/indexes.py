"""Index helpers shared by every app."""

from django.db import models


class LookupIndex(models.Index):
    """A plain index for a lookup that a unique constraint already guards.

    django-mongodb-backend builds every unique index with a partialFilterExpression,
    and SecantusDB's planner never uses a partial index (it also uses an index only
    when the index holds every field of the query): without these, each lookup by a
    unique key scans the whole collection. Key order differs from the unique index
    so both can exist on any MongoDB. Pinned in tests/portfolio/test_indexes.py.
    """
