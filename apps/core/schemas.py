"""The base of every API input schema."""

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
