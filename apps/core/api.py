"""Account endpoints of the JSON API."""

from decimal import Decimal
from typing import cast

from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja import Router, Schema

from apps.portfolio.services import trader_for_user

router = Router(tags=["account"])


class MeOut(Schema):
    username: str
    is_staff: bool
    cash: Decimal


@router.get("/me", response=MeOut, summary="The authenticated trader")
def me(request: HttpRequest) -> MeOut:
    user = cast(User, request.user)  # the router's auth guarantees a real user
    trader = trader_for_user(user)
    return MeOut(username=user.get_username(), is_staff=user.is_staff, cash=trader.cash)
