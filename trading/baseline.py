"""A bare async django-ninja endpoint: what the framework alone costs (bench/api_load.py's baseline)."""

from django.http import HttpRequest
from ninja import NinjaAPI, Schema

baseline_api = NinjaAPI(title="baseline", version="bench", urls_namespace="bench", docs_url=None, openapi_url=None)


class PongOut(Schema):
    ok: bool


@baseline_api.get("/baseline", response=PongOut, auth=None)
async def baseline(request: HttpRequest) -> PongOut:
    return PongOut(ok=True)
