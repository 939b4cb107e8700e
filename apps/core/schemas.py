"""The base of every API input schema, and the fast path of hot reads' answers."""

import json
from typing import Any

from django.http import HttpResponse
from ninja import Schema
from pydantic import ConfigDict


class InputSchema(Schema):
    """An API request body that refuses fields it does not know.

    pydantic drops unknown fields by default, so a client sending
    `"type": "limit", "limit_price": 50` got a market fill instead of an error.
    Forbidding them makes the mistake a 422 naming the field, and the OpenAPI
    schema says `additionalProperties: false`.
    """

    model_config = ConfigDict(extra="forbid")


def shaped_json(data: dict[str, Any], *, status: int = 200) -> HttpResponse:
    """A hot read's answer, built as plain JSON values in the documented shape (the route's `response=`).

    django-ninja validates a returned object against the response schema once more and
    walks it attribute by attribute; for a page of 50 symbols that costs more than the
    whole rest of the request. A view that already builds exactly the documented shape
    returns this instead; tests validate such answers against the route's schema.
    """
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return HttpResponse(body, status=status, content_type="application/json; charset=utf-8")
