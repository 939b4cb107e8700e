"""The JSON API (django-ninja): /api/v1/, OpenAPI schema and docs at /api/v1/docs."""

import logging

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from pymongo.errors import ConnectionFailure, PyMongoError

from apps.analytics.api import router as analytics_router
from apps.core.api_auth import API_AUTH
from apps.core.request_scope import database_timeout_response, is_database_timeout
from apps.dashboard.views import router as dashboard_router
from apps.leaderboard.api import router as leaderboard_router
from apps.market.api import router as market_router
from apps.portfolio.account_api import router as account_router
from apps.portfolio.api import router as trading_router
from apps.portfolio.positions_api import router as positions_router

logger = logging.getLogger(__name__)

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


@api.exception_handler(DatabaseError)
@api.exception_handler(PyMongoError)
def database_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    """A query past its deadline (MONGODB_REQUEST_TIMEOUT_MS) is a 503 the client may retry, not a 500."""
    if is_database_timeout(exc):
        return database_timeout_response()
    if _database_unreachable(exc):
        logger.warning("database unreachable while serving %s: %s", request.path, exc)
        response = api.create_response(
            request,
            {"detail": "The database is unreachable; retry shortly.", "code": "database_unavailable"},
            status=503,
        )
        response["Retry-After"] = "5"
        return response
    raise exc


def _database_unreachable(error: BaseException | None) -> bool:
    """A lost or refused MongoDB connection, also when django-mongodb-backend re-raised it as a DatabaseError."""
    for _ in range(5):
        if error is None:
            return False
        if isinstance(error, ConnectionFailure):
            return True
        error = error.__cause__ or error.__context__
    return False


api.add_router("/", account_router)
api.add_router("/", dashboard_router)
api.add_router("/", trading_router)
api.add_router("/", positions_router)
api.add_router("/", leaderboard_router)
api.add_router("/", analytics_router)
api.add_router("/symbols", market_router)
