"""Per-request instrumentation: API latency by endpoint, status and cache result; a MongoDB deadline.

- Every request runs inside `pymongo.timeout(MONGODB_REQUEST_TIMEOUT_MS)`: all its
  MongoDB commands share one deadline and pymongo sends the time left as
  maxTimeMS, so a runaway query is stopped by the server instead of holding a
  worker. A request that runs out of time gets a 503 JSON answer, never a 500:
  from a view (process_exception here, the API's exception handler), or from
  a middleware below this one (the project's handler500, views.server_error).
- /api/ requests are observed in API_LATENCY. The endpoint label is the URL
  route (`api/v1/orders/<id>`), not the path, so label cardinality stays bounded.
- The cache notes each lookup made while serving a request
  (`apps.core.request_scope.record_cache_lookup`); the request is labelled
  cache="hit" when every lookup hit, "miss" when any missed, "none" when it made none.
  A response built from a value served stale after a query timeout carries a Warning header.
"""

import time
from typing import Any

import pymongo
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_prometheus.middleware import PrometheusAfterMiddleware

from apps.core.metrics import API_LATENCY
from apps.core.middleware import HybridMiddleware
from apps.core.request_scope import cache_lookups, database_timeout_response, is_database_timeout

API_PREFIX = "/api/"
# The method is the client's to choose: every invented one made a new set of time series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HIT_RESULTS = frozenset({"hit", "l1_hit", "l2_hit"})
STALE_WARNING = '110 - "Response is Stale"'  # RFC 7234: the database timed out, a cached value was served


def request_cache_label(lookups: list[str]) -> str:
    if not lookups:
        return "none"
    return "hit" if all(result in HIT_RESULTS for result in lookups) else "miss"


def mark_stale(response: HttpResponse, lookups: list[str]) -> HttpResponse:
    if "stale" in lookups:
        response["Warning"] = STALE_WARNING
    return response


def method_label(method: str | None) -> str:
    """The request method as a metric label: one of KNOWN_METHODS, else "other"."""
    return method if method in KNOWN_METHODS else "other"


class BoundedPrometheusAfterMiddleware(PrometheusAfterMiddleware):
    """django-prometheus' per-view metrics with the method label drawn from a fixed set.

    Its latency histogram takes `request.method` as sent, so `ZZRANDOM42 /api/v1/me`
    created a new histogram (dozens of series) per invented method.
    """

    def label_metric(self, metric: Any, request: HttpRequest, response: Any = None, **labels: str) -> Any:
        if "method" in labels:
            labels["method"] = method_label(labels["method"])
        return super().label_metric(metric, request, response, **labels)


def observe_api_request(request: HttpRequest, status: int, seconds: float, lookups: list[str]) -> None:
    if not request.path.startswith(API_PREFIX):
        return
    match = getattr(request, "resolver_match", None)
    endpoint = match.route if match is not None and match.route else "unmatched"
    API_LATENCY.labels(
        endpoint=endpoint, method=method_label(request.method), status=str(status), cache=request_cache_label(lookups)
    ).observe(seconds)


class RequestMetricsMiddleware(HybridMiddleware):
    def _call(self, request: HttpRequest) -> HttpResponse:
        lookups: list[str] = []
        token = cache_lookups.set(lookups)
        started = time.perf_counter()
        try:
            with pymongo.timeout(settings.MONGODB_REQUEST_TIMEOUT_MS / 1000):
                response: HttpResponse = self.get_response(request)
        finally:
            cache_lookups.reset(token)
        observe_api_request(request, response.status_code, time.perf_counter() - started, lookups)
        return mark_stale(response, lookups)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        lookups: list[str] = []
        token = cache_lookups.set(lookups)
        started = time.perf_counter()
        try:
            with pymongo.timeout(settings.MONGODB_REQUEST_TIMEOUT_MS / 1000):
                response: HttpResponse = await self.get_response(request)
        finally:
            cache_lookups.reset(token)
        observe_api_request(request, response.status_code, time.perf_counter() - started, lookups)
        return mark_stale(response, lookups)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return database_timeout_response() if is_database_timeout(exception) else None
