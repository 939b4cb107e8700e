"""The JSON API (django-ninja): /api/v1/, OpenAPI schema and docs at /api/v1/docs."""

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError

from apps.core.api import router as account_router
from apps.core.api_auth import API_AUTH

api = NinjaAPI(
    title="Paper-trading API",
    version="1",
    description="Live market data, orders, portfolio, invoices, leaderboard and analytics.",
    auth=API_AUTH,
    urls_namespace="api",
)


@api.exception_handler(AuthenticationError)
def unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = api.create_response(
        request,
        {"detail": "Authentication required: send 'Authorization: Bearer <token>' or log in.", "code": "unauthorized"},
        status=401,
    )
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


api.add_router("/", account_router)
