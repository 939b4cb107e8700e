"""Ticks move from one document per tick (PriceTick) to tick buckets on the market database (ADR 0005).

Run `manage.py migrate --database market` first (it creates the bucket
collection and its indexes), then `manage.py migrate`: on the default
database this moves every stored tick into buckets, symbol by symbol with
progress, then drops the old collection. Bucket ids are deterministic, so a
move interrupted half-way and run again stores no tick twice.
"""

from datetime import UTC, datetime
from typing import Any

import django_mongodb_backend.fields
from django.conf import settings
from django.db import connections, migrations, models, router

OLD_COLLECTION = "market_pricetick"
NEW_COLLECTION = "market_tickbucket"


def _numbered(document: dict[str, Any]) -> Any:
    from apps.market.ticks import Tick

    recorded = document["recorded_at"].replace(tzinfo=UTC)
    milliseconds = (recorded - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000
    tick = Tick(
        symbol=document["symbol"],
        price=float(document["price"].to_decimal()),
        previous_close=float(document["previous_close"].to_decimal()),
        volume=int(document["volume"]),
        timestamp=round(milliseconds),
    )
    return document["tick_id"], tick


def move_ticks_to_buckets(apps: Any, schema_editor: Any) -> None:
    from apps.market.buckets import MongoBucketStore, ticks_as_documents

    old = schema_editor.connection.get_collection(OLD_COLLECTION)
    total = old.estimated_document_count()
    if not total:
        return
    bucket_model = apps.get_model("market", "TickBucket")
    market = connections[router.db_for_write(bucket_model)]
    if NEW_COLLECTION not in market.database.list_collection_names():
        raise RuntimeError(
            f"{total} ticks to move, but the {market.alias!r} database has no {NEW_COLLECTION} collection: "
            f"run `manage.py migrate --database {market.alias}` first, then `manage.py migrate` again"
        )
    store = MongoBucketStore(market.get_collection(NEW_COLLECTION))
    moved = 0
    for symbol in sorted(old.distinct("symbol")):
        ticks = [_numbered(document) for document in old.find({"symbol": symbol})]
        documents = ticks_as_documents(
            ticks, window_ms=settings.TICK_BUCKET_SECONDS * 1000, max_points=settings.TICK_BUCKET_MAX_POINTS
        )
        store.insert_documents(documents)
        moved += len(ticks)
        print(f"  moved {moved}/{total} ticks into buckets ({symbol}: {len(documents)} buckets)", flush=True)


class Migration(migrations.Migration):
    dependencies = [
        ("market", "0002_pricetick"),
    ]

    operations = [
        migrations.CreateModel(
            name="TickBucket",
            fields=[
                (
                    "id",
                    models.CharField(
                        db_column="_id",
                        help_text="symbol|window start (ms)",
                        max_length=120,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("symbol", models.CharField(max_length=10)),
                ("start", models.DateTimeField(help_text="Time of the first point.")),
                ("end", models.DateTimeField(help_text="Time of the last point.")),
                ("count", models.PositiveIntegerField()),
                ("tick_ids", django_mongodb_backend.fields.ArrayField(base_field=models.CharField(max_length=64), size=None)),
                (
                    "times",
                    django_mongodb_backend.fields.ArrayField(
                        base_field=models.BigIntegerField(), help_text="Milliseconds since the epoch.", size=None
                    ),
                ),
                ("prices", django_mongodb_backend.fields.ArrayField(base_field=models.FloatField(), size=None)),
                ("previous_closes", django_mongodb_backend.fields.ArrayField(base_field=models.FloatField(), size=None)),
                ("volumes", django_mongodb_backend.fields.ArrayField(base_field=models.BigIntegerField(), size=None)),
            ],
            options={
                "indexes": [
                    models.Index(fields=["symbol", "start"], name="tickbucket_symbol_start"),
                    models.Index(fields=["end"], name="tickbucket_end"),
                ],
            },
        ),
        # Runs where the old ticks are (the default database; the router says so for "pricetick").
        migrations.RunPython(move_ticks_to_buckets, migrations.RunPython.noop, hints={"model_name": "pricetick"}),
        migrations.DeleteModel(name="PriceTick"),
    ]
