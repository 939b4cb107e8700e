"""Which MongoDB indexes the models declare, and which of them the database lacks.

Expected indexes are derived from the models, never listed by hand: each
`Meta.indexes` entry, each `db_index` field (ForeignKeys included), each unique
field, `unique_together` and field-only `UniqueConstraint`. An index counts as
present when the collection holds one with the same keys in the same order and
directions (and unique when it must be); names may differ.
"""

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from django.apps import apps
from django.db import connections, models, router

from apps.core.metrics import INDEXES_MISSING

logger = logging.getLogger(__name__)

IndexKeys = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ExpectedIndex:
    collection: str
    keys: IndexKeys
    unique: bool
    source: str  # where it is declared, for the operator

    def describe(self) -> str:
        keys = ", ".join(f"{field}: {direction}" for field, direction in self.keys)
        return f"{self.collection} {{{keys}}}{' unique' if self.unique else ''} ({self.source})"


def _column(model: type[models.Model], field_name: str) -> str:
    field = model._meta.get_field(field_name)
    assert isinstance(field, models.Field), f"{field_name} is not a concrete field"
    return str(field.column)


def model_indexes(model: type[models.Model]) -> list[ExpectedIndex]:
    meta = model._meta
    collection = meta.db_table
    label = f"{meta.app_label}.{meta.object_name}"
    expected: list[ExpectedIndex] = []
    for index in meta.indexes:
        if index.contains_expressions or not index.fields_orders:
            continue
        keys = tuple((_column(model, name), -1 if order == "DESC" else 1) for name, order in index.fields_orders)
        expected.append(ExpectedIndex(collection, keys, False, f"{label} Meta.indexes {index.name}"))
    for field in meta.local_fields:
        if field.primary_key or not field.concrete:
            continue
        if field.unique:
            expected.append(ExpectedIndex(collection, ((field.column, 1),), True, f"{label}.{field.name} unique"))
        elif getattr(field, "db_index", False):  # ForeignKeys default to True
            expected.append(ExpectedIndex(collection, ((field.column, 1),), False, f"{label}.{field.name} db_index"))
    unique_sets = [list(fields) for fields in meta.unique_together]
    unique_sets += [
        list(c.fields)
        for c in meta.constraints
        if isinstance(c, models.UniqueConstraint) and c.fields and not c.expressions and c.condition is None
    ]
    for fields in unique_sets:
        keys = tuple((_column(model, name), 1) for name in fields)
        expected.append(ExpectedIndex(collection, keys, True, f"{label} unique {'+'.join(fields)}"))
    return expected


def expected_indexes() -> list[ExpectedIndex]:
    """Every index the installed, managed models declare."""
    found: list[ExpectedIndex] = []
    for model in apps.get_models():
        meta = model._meta
        if meta.managed and not meta.proxy and not meta.swapped:
            found.extend(model_indexes(model))
    return found


def _present(expected: ExpectedIndex, existing: Iterable[Mapping[str, object]]) -> bool:
    for info in existing:
        keys = tuple((str(field), int(direction)) for field, direction in info["key"])  # type: ignore[attr-defined]
        if keys == expected.keys and (bool(info.get("unique")) or not expected.unique):
            return True
    return False


def missing_indexes() -> list[ExpectedIndex]:
    """Declared indexes the database does not have (a missing collection lacks all of its indexes)."""
    aliases = {model._meta.db_table: router.db_for_write(model) for model in apps.get_models()}
    collections: dict[str, set[str]] = {}
    existing: dict[str, list[Mapping[str, object]]] = {}
    missing: list[ExpectedIndex] = []
    for index in expected_indexes():
        database = connections[aliases.get(index.collection, "default")].database  # type: ignore[attr-defined]
        if database.name not in collections:
            collections[database.name] = set(database.list_collection_names())
        if index.collection not in existing:
            in_db = index.collection in collections[database.name]
            existing[index.collection] = list(database[index.collection].index_information().values()) if in_db else []
        if not _present(index, existing[index.collection]):
            missing.append(index)
    INDEXES_MISSING.set(len(missing))
    return missing


@cache
def indexed_leading_fields() -> dict[str, frozenset[str]]:
    """collection -> fields that lead some declared index (plus _id): a filter on one can use an index."""
    leading: dict[str, set[str]] = {}
    for index in expected_indexes():
        leading.setdefault(index.collection, {"_id"}).add(index.keys[0][0])
    return {collection: frozenset(fields) for collection, fields in leading.items()}


def log_missing_indexes() -> None:
    """Start-up check: warn about missing indexes; never fails (the database may not be up yet)."""
    try:
        missing = missing_indexes()
    except Exception as error:  # start-up must not depend on this check
        logger.warning("index check skipped: %s", error)
        return
    if missing:
        logger.warning(
            "%d declared index(es) missing; queries on them scan whole collections. Run `manage.py migrate` "
            "or see `manage.py check_indexes`: %s",
            len(missing),
            "; ".join(index.describe() for index in missing),
        )
    else:
        logger.info("index check: every declared index is present")
