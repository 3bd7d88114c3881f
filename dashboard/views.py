from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache

from dashboard.redis_client import get_redis


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer; 503 naming what is down."""
    down = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        down.append("database")
    try:
        get_redis().ping()
    except Exception:
        down.append("redis")
    if down:
        return JsonResponse({"status": "down", "down": down}, status=503)
    return JsonResponse({"status": "ok"})


def home(request: HttpRequest):
    return redirect("overview" if request.user.is_authenticated else "accounts:login")
