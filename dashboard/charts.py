"""Data for the dashboard's charts and tables, read from the rollups only.

Every function here aggregates in SQL over DailyUsage or HourlyUsage, filtered by
project first so the (project, day) / (project, hour) indexes serve the query, and
returns plain dicts: money stays Decimal for templates, and chart payloads carry money
as exact decimal strings (Chart.js parses them; tests compare them as Decimal).
A query's count never depends on the number of days, models or keys it covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import F, Max, Sum
from django.utils import timezone

from accounts.models import Environment, Project
from usage import budgets
from usage.models import Budget, DailyUsage, HourlyUsage
from usage.rollups import money_str

ZERO = Decimal(0)
TOKEN_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
SUM_FIELDS = ("calls", "errors", *TOKEN_FIELDS, "unpriced_calls", "latency_ms_sum")


def today(now: datetime | None = None) -> date:
    """Today in settings.TIME_ZONE, the zone the daily rollups are cut in."""
    return (now or timezone.now()).astimezone(ZoneInfo(settings.TIME_ZONE)).date()


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def sums() -> dict[str, Any]:
    """The aggregate expressions every table uses: calls, errors, tokens, cost…"""
    out: dict[str, Any] = {f: Sum(f) for f in SUM_FIELDS}
    out["cost"] = Sum("cost_usd")
    out["latency_max"] = Max("latency_ms_max")
    return out


def numbers(row: Mapping[str, Any]) -> dict[str, Any]:
    """Sums with NULLs (no rows) as zero; the average latency where there were calls."""
    out: dict[str, Any] = {f: int(row.get(f) or 0) for f in SUM_FIELDS}
    out["cost"] = row.get("cost") or ZERO
    out["latency_max"] = int(row.get("latency_max") or 0)
    out["latency_avg"] = round(out["latency_ms_sum"] / out["calls"]) if out["calls"] else None
    out["error_rate"] = (
        (Decimal(out["errors"] * 100) / out["calls"]).quantize(Decimal("0.1"))
        if out["calls"]
        else None
    )
    return out


def stacked_series(
    rows: Iterable[Mapping[str, Any]], labels: Sequence[Any], series: dict[Any, str], field: str
) -> dict[str, Any]:
    """Chart.js bar data: one dataset per series (e.g. project), one value per label.

    rows carry (label value in `bucket`, series id in `series`, Decimal in `field`);
    missing buckets are zero, so every dataset lines up with the labels.
    """
    index = {label: i for i, label in enumerate(labels)}
    values: dict[Any, list[Decimal]] = {sid: [ZERO] * len(labels) for sid in series}
    for row in rows:
        i = index.get(row["bucket"])
        if i is not None and row["series"] in values:
            values[row["series"]][i] += row[field] or ZERO
    return {
        "labels": [label.isoformat() if hasattr(label, "isoformat") else label for label in labels],
        "datasets": [
            {"label": name, "data": [money_str(v) for v in values[sid]]}
            for sid, name in series.items()
        ],
        "currency": "USD",
    }


# Overview: several projects


def spend_by_project(projects: Sequence[Project], first: date, last: date) -> dict[str, Any]:
    """Daily spend from first to last (inclusive), one stacked dataset per project."""
    rows = (
        DailyUsage.objects.filter(project__in=[p.pk for p in projects], day__range=(first, last))
        .values("project_id", "day")
        .annotate(cost=Sum("cost_usd"))
        .order_by()
    )
    points = [{"bucket": r["day"], "series": r["project_id"], "cost": r["cost"]} for r in rows]
    names = {p.pk: p.name for p in projects}
    return stacked_series(points, days_between(first, last), names, "cost")


def top_models(
    project_ids: Sequence[int], first: date, last: date, n: int | None = 8
) -> list[dict[str, Any]]:
    """Models by cost over the range (all of them with n=None)."""
    rows = (
        DailyUsage.objects.filter(project__in=project_ids, day__range=(first, last))
        .values("model")
        .annotate(**sums())
        .order_by("-cost", "-calls", "model")[:n]  # type: ignore[misc]
    )
    return [{"model": r["model"], **numbers(r)} for r in rows]


def unpriced_models(project_ids: Sequence[int], first: date, last: date) -> list[dict[str, Any]]:
    """Models with calls logged without a price in the range, per project: the
    rollups' unpriced_calls, so the call log is never read."""
    rows = (
        DailyUsage.objects.filter(
            project__in=project_ids, day__range=(first, last), unpriced_calls__gt=0
        )
        .values("project__name", "project__slug", "model")
        .annotate(calls=Sum("unpriced_calls"))
        .order_by("project__name", "model")
    )
    return [
        {"project": r["project__name"], "slug": r["project__slug"], "model": r["model"],
         "calls": int(r["calls"])}
        for r in rows
    ]  # fmt: skip


def totals(project_ids: Sequence[int], first: date, last: date) -> dict[str, Any]:
    usage = DailyUsage.objects.filter(project__in=project_ids, day__range=(first, last))
    return numbers(usage.aggregate(**sums()))


# Budgets: spend this period and forecast, by the rules in usage.budgets


def _level(percent: Decimal) -> str:
    return "over" if percent >= 100 else "warning" if percent >= 80 else "ok"


@dataclass
class BudgetStatus:
    budget: Budget
    spend: Decimal
    forecast: Decimal | None
    percent: Decimal
    forecast_percent: Decimal | None

    @property
    def level(self) -> str:
        return _level(self.percent)

    @property
    def forecast_level(self) -> str | None:
        return _level(self.forecast_percent) if self.forecast_percent is not None else None

    @property
    def meter_value(self) -> Decimal:
        return min(self.percent, Decimal(100))

    def chart(self) -> dict[str, Any]:
        """Half-doughnut gauge: spent, forecast beyond spend, what the forecast leaves."""
        limit = self.budget.monthly_limit_usd
        ahead = max((self.forecast or ZERO) - self.spend, ZERO)
        # The arc spans the limit, or more once spend or forecast passes it.
        rest = max(limit - self.spend - ahead, ZERO)
        return {
            "spend": money_str(self.spend),
            "forecast": money_str(self.forecast) if self.forecast is not None else None,
            "limit": money_str(limit),
            "parts": [money_str(self.spend), money_str(ahead), money_str(rest)],
            "level": self.level,
            "currency": "USD",
        }


def _period_daily(
    project_ids: Sequence[int], now: datetime
) -> dict[tuple[int, int | None], dict[date, Decimal]]:
    """This period's spend per day, per project (environment None) and per environment."""
    first, last = budgets.period_start(now), budgets.period_end(now)
    rows = (
        DailyUsage.objects.filter(project__in=project_ids, day__range=(first, last))
        .values("project_id", "environment_id", "day")
        .annotate(cost=Sum("cost_usd"))
        .order_by()
    )
    per_scope: dict[tuple[int, int | None], dict[date, Decimal]] = {}
    for r in rows:
        for scope in ((r["project_id"], None), (r["project_id"], r["environment_id"])):
            daily = per_scope.setdefault(scope, {})
            daily[r["day"]] = daily.get(r["day"], ZERO) + (r["cost"] or ZERO)
    return per_scope


def _status(budget: Budget, daily: dict[date, Decimal], now: datetime) -> BudgetStatus:
    spend = sum(daily.values(), ZERO)
    projected = budgets.forecast(budget, now, daily)
    return BudgetStatus(
        budget, spend, projected, budget.percent(spend),
        budget.percent(projected) if projected is not None else None,
    )  # fmt: skip


def budget_statuses(
    project_ids: Sequence[int],
    now: datetime | None = None,
    per_scope: dict[tuple[int, int | None], dict[date, Decimal]] | None = None,
) -> list[BudgetStatus]:
    """Every budget of these projects with its spend this period and forecast.

    Two queries however many budgets: the period's spend per (project, environment,
    day), from which each budget's daily dict is cut and handed to budgets.forecast —
    the same rule (and the same sum) the alert evaluation uses.
    """
    now = now or timezone.now()
    if per_scope is None:
        per_scope = _period_daily(project_ids, now)
    found = (
        Budget.objects.filter(project__in=project_ids)
        .select_related("project", "environment")
        .order_by("project__name", F("environment__name").asc(nulls_first=True))
    )
    return [_status(b, per_scope.get((b.project_id, b.environment_id), {}), now) for b in found]


def month_to_date(projects: Sequence[Project], now: datetime | None = None) -> list[dict[str, Any]]:
    """Per project: spend this month, its forecast, and its budgets (project-wide first)."""
    now = now or timezone.now()
    ids = [p.pk for p in projects]
    per_scope = _period_daily(ids, now)
    statuses: dict[int, list[BudgetStatus]] = {}
    for status in budget_statuses(ids, now, per_scope):
        statuses.setdefault(status.budget.project_id, []).append(status)
    out = []
    for project in projects:
        daily = per_scope.get((project.pk, None), {})
        mine = statuses.get(project.pk, [])
        wide = next((s for s in mine if s.budget.environment_id is None), None)
        # Without a project-wide budget, the forecast still follows the budget rule.
        forecast = wide.forecast if wide else budgets.forecast(Budget(project=project), now, daily)
        out.append({
            "project": project, "spend": sum(daily.values(), ZERO), "forecast": forecast,
            "budget": wide, "environment_budgets": [s for s in mine if s is not wide],
        })  # fmt: skip
    return out


# One project


def spend_by_environment(project: Project, first: date, last: date) -> dict[str, Any]:
    rows = (
        DailyUsage.objects.filter(project=project, day__range=(first, last))
        .values("environment_id", "day")
        .annotate(cost=Sum("cost_usd"))
        .order_by()
    )
    points = [{"bucket": r["day"], "series": r["environment_id"], "cost": r["cost"]} for r in rows]
    envs = dict(
        Environment.objects.filter(project=project).order_by("name").values_list("id", "name")
    )
    return stacked_series(points, days_between(first, last), envs, "cost")


def _hour_start(now: datetime) -> datetime:
    """Start of the current hour in TIME_ZONE (how HourlyUsage cuts hours), in UTC."""
    local = now.astimezone(ZoneInfo(settings.TIME_ZONE))
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def health(project: Project, hours: int = 48, now: datetime | None = None) -> dict[str, Any]:
    """Calls, errors and latency per hour (chart) and per model (table) from HourlyUsage."""
    end = _hour_start(now or timezone.now())
    start = end - timedelta(hours=hours - 1)
    usage = HourlyUsage.objects.filter(project=project, hour__gte=start, hour__lte=end)
    per_hour = {
        r["hour"].astimezone(UTC): r
        for r in usage.values("hour").annotate(**sums()).order_by()
    }  # fmt: skip
    tz = ZoneInfo(settings.TIME_ZONE)
    labels, calls, errors, avg, peak = [], [], [], [], []
    for i in range(hours):
        hour = start + timedelta(hours=i)
        n = numbers(per_hour.get(hour, {}))
        labels.append(hour.astimezone(tz).isoformat())
        calls.append(n["calls"])
        errors.append(n["errors"])
        avg.append(n["latency_avg"])
        peak.append(n["latency_max"] if n["calls"] else None)
    by_model = [
        {"model": r["model"], **numbers(r)}
        for r in usage.values("model").annotate(**sums()).order_by("-errors", "-calls", "model")
    ]
    return {
        "chart": {"labels": labels, "calls": calls, "errors": errors, "latency_avg": avg,
                  "latency_max": peak},
        "models": by_model,
        "totals": numbers(usage.aggregate(**sums())),
        "hours": hours,
    }  # fmt: skip


def has_usage(project_ids: Sequence[int]) -> bool:
    return DailyUsage.objects.filter(project__in=project_ids).exists()
