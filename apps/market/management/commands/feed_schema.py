"""manage.py feed_schema: print the market feed's JSON Schema (kept in docs/feed-schema.json)."""

import json
from typing import Any

from django.core.management.base import BaseCommand

from apps.market.feed.protocol import feed_json_schema


def feed_schema_text() -> str:
    return json.dumps(feed_json_schema(), indent=2, sort_keys=True) + "\n"


class Command(BaseCommand):
    help = "Print the JSON Schema of every feed message and frame (redirect it into docs/feed-schema.json)."
    requires_system_checks: list[str] = []  # prints a schema: needs no Redis or database

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(feed_schema_text(), ending="")
