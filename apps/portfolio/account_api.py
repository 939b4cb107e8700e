"""Account endpoints of the JSON API."""

from decimal import Decimal
from typing import cast

from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja import Field, Router, Schema

from apps.core.api_auth import ASYNC_API_AUTH
from apps.core.cache import read_cached
from apps.portfolio.selectors import trader_profile

router = Router(tags=["account"])


class MeOut(Schema):
    username: str
    is_staff: bool
    cash: Decimal
    reserved_cash: Decimal = Field(description="Cash held by your resting buy orders (limit price x quantity).")
    buying_power: Decimal = Field(description="cash - reserved_cash: what a new buy order may spend.")


@router.get("/me", response=MeOut, auth=ASYNC_API_AUTH, summary="The authenticated trader")
async def me(request: HttpRequest) -> MeOut:
    return MeOut(**await read_cached(trader_profile, cast(User, request.user)))  # auth guarantees a real user
