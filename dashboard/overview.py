"""The overview: the landing page after login, across every project the user can see.

Spend this month against budget and forecast, daily spend stacked by project, top
models, recent alerts, keys that need attention and models without a price. It reads
rollups (DailyUsage) and small tables only; the query count is fixed whatever the
number of days, models or calls.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.hygiene import key_hygiene
from accounts.models import Project, ProviderKey, RotationStage, User
from dashboard import charts
from usage.models import BudgetAlert, HealthAlert

RANGES = (30, 90)
ATTENTION_FLAGS = {"invalid", "leaked", "shared", "unused"}


class AuthenticatedHttpRequest(HttpRequest):
    user: User


def chosen_days(request: HttpRequest) -> int:
    """?days=30|90; anything else falls back to 30 (a chart range, not an error)."""
    value = request.GET.get("days", "")
    return int(value) if value.isdigit() and int(value) in RANGES else RANGES[0]


def chosen_range(request: HttpRequest, now: datetime) -> tuple[int, date, date]:
    """(days, first day, last day) of the charts: the chosen number of days to today."""
    days = chosen_days(request)
    last = charts.today(now)
    return days, last - timedelta(days=days - 1), last


def _delivery(alert: BudgetAlert | HealthAlert) -> str:
    if alert.sent_at:
        return "sent"
    return "retrying" if alert.last_error else "pending"


def _budget_alert_text(alert: BudgetAlert) -> str:
    scope = alert.budget.environment_name or ""
    values = {"threshold": alert.threshold, "scope": scope}
    if alert.kind == BudgetAlert.Kind.FORECAST:
        text = _("Forecast over the monthly budget")
    else:
        text = _("%(threshold)s %% of the monthly budget reached") % values
    return f"{text} ({scope})" if scope else text


def _health_alert_text(alert: HealthAlert) -> str:
    detail = alert.detail or {}
    if alert.kind == HealthAlert.Kind.UNPRICED_MODEL:
        return _("Calls to %(model)s have no price") % {"model": detail.get("model", "?")}
    if alert.kind == HealthAlert.Kind.SUCCESS_RATE:
        return _("Success rate fell to %(rate)s %%") % {"rate": detail.get("success_rate", "?")}
    return _("Slow calls: p95 latency over %(ms)s ms") % {"ms": detail.get("threshold_ms", "?")}


def recent_alerts(project_ids: list[int], n: int = 8) -> list[dict[str, Any]]:
    """Budget and health alerts of these projects, newest first (two queries)."""
    rows: list[dict[str, Any]] = [
        {"at": a.created_at, "project": a.budget.project, "kind": "budget",
         "text": _budget_alert_text(a), "status": _delivery(a), "open": None}
        for a in BudgetAlert.objects.filter(budget__project__in=project_ids)
        .select_related("budget__project", "budget__environment")
        .order_by("-created_at")[:n]
    ] + [
        {"at": a.opened_at, "project": a.project, "kind": "health",
         "text": _health_alert_text(a), "status": _delivery(a), "open": a.closed_at is None}
        for a in HealthAlert.objects.filter(project__in=project_ids)
        .select_related("project")
        .order_by("-opened_at")[:n]
    ]  # fmt: skip
    rows.sort(key=lambda r: r["at"], reverse=True)
    return rows[:n]


def keys_needing_attention(projects: list[Project]) -> list[dict[str, Any]]:
    """Non-revoked keys that are due or overdue for rotation, or flagged."""
    names = {p.slug: p.name for p in projects}
    keys = (
        ProviderKey.objects.filter(project__in=[p.pk for p in projects])
        .exclude(status=ProviderKey.Status.REVOKED)
        .order_by("project__name", "environment__name", "-created_at")
    )
    return [
        {**row, "project_name": names[row["project"]]}
        for row in key_hygiene(keys)
        if row["stage"] in (RotationStage.DUE, RotationStage.OVERDUE)
        or ATTENTION_FLAGS.intersection(row["flags"])
    ]


@login_required
def overview(request: AuthenticatedHttpRequest) -> HttpResponse:
    projects = list(Project.visible_to(request.user).order_by("name"))
    ids = [p.pk for p in projects]
    now = timezone.now()
    days, first, last = chosen_range(request, now)
    ctx: dict[str, Any] = {"projects": projects, "days": days, "ranges": RANGES,
                           "site_url": settings.SITE_URL}  # fmt: skip
    if projects and charts.has_usage(ids):
        ctx.update(
            has_usage=True,
            first=first,
            last=last,
            month=charts.month_to_date(projects, now),
            spend_chart=charts.spend_by_project(projects, first, last),
            totals=charts.totals(ids, first, last),
            top_models=charts.top_models(ids, first, last),
            unpriced=charts.unpriced_models(ids, first, last),
        )
    if projects:
        ctx.update(alerts=recent_alerts(ids), attention=keys_needing_attention(projects))
    return render(request, "dashboard/overview.html", ctx)
