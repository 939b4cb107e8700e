"""/healthz: whether every dependency answers."""

from django.http import HttpRequest, JsonResponse

from apps.core.health import recent_health


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every dependency answers, 503 naming the ones that do not.

    Results are at most HEALTH_CACHE_SECONDS old. Details (addresses, error text,
    timings) are for staff; anyone else learns the status and which service failed.
    """
    results = await recent_health.results()
    failed = [r.name for r in results if not r.ok]
    body: dict[str, object] = {"status": "ok" if not failed else "degraded", "failed": failed}
    user = await request.auser()
    if getattr(user, "is_staff", False):
        body["checks"] = {r.name: {"ok": r.ok, "detail": r.detail, "ms": r.milliseconds} for r in results}
    response = JsonResponse(body, status=503 if failed else 200)
    response["Cache-Control"] = "no-store"
    return response
