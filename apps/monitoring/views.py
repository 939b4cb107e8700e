"""The operator page (/ops/, staff only), its live data (/ops/data) and /metrics for Prometheus."""

import hmac
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from apps.core.request_scope import database_timeout_response, is_database_timeout
from apps.monitoring.instrumentation import multiprocess_dir, reap_dead_processes
from apps.monitoring.selectors import ops_snapshot, trends_read

View = Callable[[HttpRequest], HttpResponse]


def staff_required(view: View) -> View:
    """Anonymous: redirect to the login page. Logged in but not staff: 403."""

    @wraps(view)
    def guarded(request: HttpRequest) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not getattr(request.user, "is_staff", False):
            raise PermissionDenied("The operator page is for staff only.")
        return view(request)

    return guarded


@require_GET
@never_cache
@staff_required
def ops_page(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {"snapshot": ops_snapshot(), "charts": trends_read()}
    return render(request, "monitoring/ops.html", context)


@require_GET
@never_cache
@staff_required
def ops_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(ops_snapshot())


@require_GET
@never_cache
@staff_required
def ops_charts(request: HttpRequest) -> HttpResponse:
    return render(request, "monitoring/_charts.html", {"charts": trends_read()})


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database timeout anywhere in the request is a 503 to retry; anything else Django's 500."""
    if is_database_timeout(sys.exc_info()[1]):
        return database_timeout_response()
    return defaults.server_error(request)


def metrics_allowed(request: HttpRequest) -> bool:
    """`Authorization: Bearer $METRICS_TOKEN`; with no token configured, open only in development.

    /metrics lists per-endpoint traffic, order outcomes and queue lengths: not for the public.
    """
    expected = settings.METRICS_TOKEN
    if not expected:
        return bool(settings.METRICS_OPEN_WITHOUT_TOKEN)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Every process' metrics (prometheus_client multiprocess mode), including django-prometheus'."""
    if not metrics_allowed(request):
        refused = HttpResponse("metrics: send 'Authorization: Bearer <METRICS_TOKEN>'\n", status=401)
        refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    directory = multiprocess_dir()
    if directory:
        reap_dead_processes()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, directory)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
