"""Account endpoints of the JSON API."""

from decimal import Decimal
from typing import cast

from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja import Router, Schema

from apps.portfolio.selectors import trader_profile

router = Router(tags=["account"])


class MeOut(Schema):
    username: str
    is_staff: bool
    cash: Decimal


@router.get("/me", response=MeOut, summary="The authenticated trader")
def me(request: HttpRequest) -> MeOut:
    return MeOut(**trader_profile(cast(User, request.user)))  # the router's auth guarantees a real user
