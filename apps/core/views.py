from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from apps.core.health import run_checks


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every dependency answers, 503 naming the ones that do not."""
    results = await run_checks()
    failed = [r.name for r in results if not r.ok]
    body = {
        "status": "ok" if not failed else "degraded",
        "failed": failed,
        "checks": {r.name: {"ok": r.ok, "detail": r.detail, "ms": r.milliseconds} for r in results},
    }
    return JsonResponse(body, status=503 if failed else 200)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")
