"""Budget rules: periods, spend, forecast, evaluation into exactly-once alerts, and
setting a budget (with the hard limit the gateway reads from Redis).

Called alike by the Celery tasks (after every flush and on a 5-minute beat), by
`manage.py check_budgets` and by the API. Spend is always read from DailyUsage for
the current period's days: a new month starts at zero because its days have no
rows yet, never because a reset job ran (a job that can fail, run late or twice).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.http import Http404
from django.utils import timezone

from accounts import audit
from accounts.models import Environment, Project, User
from dashboard.redis_client import get_redis
from usage.budget_fields import (  # noqa: F401  (budget_summary: part of this module's API)
    CENT,
    budget_summary,
    clean_limit,
    clean_recipients,
    clean_thresholds,
    clean_webhook_url,
    snapshot,
)
from usage.hardlimit import budget_key, live_key, month_of
from usage.models import Budget, BudgetAlert, DailyUsage
from usage.rollups import money_str, to_units

log = logging.getLogger(__name__)

# The gateway reads a project's hard limit here: integer units of 1e-10 USD, "0" = none.
FORECAST_MIN_DAYS = 3  # days with data in the period before a forecast is made
TRAILING_DAYS = 7


# Periods: calendar months in settings.TIME_ZONE


def local_now(now: datetime | None = None) -> datetime:
    return (now or timezone.now()).astimezone(ZoneInfo(settings.TIME_ZONE))


def period_start(now: datetime | None = None) -> date:
    """First day of the current month in settings.TIME_ZONE."""
    return local_now(now).date().replace(day=1)


def period_end(now: datetime | None = None) -> date:
    """Last day (inclusive) of the current month in settings.TIME_ZONE."""
    first = period_start(now)
    return (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def _midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=ZoneInfo(settings.TIME_ZONE)).astimezone(UTC)


def _days_between(start: datetime, end: datetime) -> Decimal:
    return Decimal((end - start).total_seconds()) / Decimal(86_400)


# Spend and forecast, from DailyUsage only


def _usage(budget: Budget):
    usage = DailyUsage.objects.filter(project_id=budget.project_id)
    if budget.environment_id:
        usage = usage.filter(environment_id=budget.environment_id)
    return usage


def spend_between(budget: Budget, first: date, last: date) -> Decimal:
    total = _usage(budget).filter(day__gte=first, day__lte=last).aggregate(t=Sum("cost_usd"))["t"]
    return total or Decimal(0)


def daily_spend(budget: Budget, now: datetime | None = None) -> dict[date, Decimal]:
    """Spend per day of the current period (days with calls only)."""
    rows = (
        _usage(budget)
        .filter(day__gte=period_start(now), day__lte=period_end(now))
        .values("day")
        .annotate(spend=Sum("cost_usd"))
    )
    return {r["day"]: r["spend"] or Decimal(0) for r in rows}


def forecast(
    budget: Budget, now: datetime | None = None, daily: dict[date, Decimal] | None = None
) -> Decimal | None:
    """Month-end projection: spend so far over the elapsed part of the month, or the
    trailing 7-day daily rate × days in the month if that is higher. None until the
    period has FORECAST_MIN_DAYS days with data (a first hour says little)."""
    now = local_now(now)
    daily = daily_spend(budget, now) if daily is None else daily
    if len(daily) < FORECAST_MIN_DAYS:
        return None
    first, last = period_start(now), period_end(now)
    days_in_month = Decimal((last - first).days + 1)
    elapsed = _days_between(_midnight_utc(first), now)
    if elapsed <= 0:
        return None
    linear = sum(daily.values(), Decimal(0)) * days_in_month / elapsed
    # The trailing window stays inside the period: last month's days never count here.
    window_first = max(first, now.date() - timedelta(days=TRAILING_DAYS - 1))
    window_elapsed = _days_between(_midnight_utc(window_first), now)
    window_spend = sum((s for d, s in daily.items() if d >= window_first), Decimal(0))
    trailing = window_spend / window_elapsed * days_in_month
    return max(linear, trailing).quantize(CENT)


def top_models(budget: Budget, now: datetime | None = None, n: int = 5) -> list[dict[str, Any]]:
    rows = (
        _usage(budget)
        .filter(day__gte=period_start(now), day__lte=period_end(now))
        .values("model")
        .annotate(spend=Sum("cost_usd"))
        .order_by("-spend", "model")[:n]
    )
    return [{"model": r["model"] or "—", "spend_usd": r["spend"] or Decimal(0)} for r in rows]


# Evaluation


@dataclass
class BudgetCheck:
    budget: Budget
    spend: Decimal
    forecast: Decimal | None
    alerts: list[BudgetAlert] = field(default_factory=list)  # created by this evaluation

    def line(self) -> str:
        b = self.budget
        scope = f"{b.project.slug}/{b.environment_name}" if b.environment_id else b.project.slug
        forecast = f", forecast ${money_str(self.forecast)}" if self.forecast is not None else ""
        alerted = ", ".join(_alert_label(a) for a in self.alerts) or "nothing new"
        return (
            f"{scope}: ${money_str(self.spend)} of ${b.monthly_limit_usd} "
            f"({b.percent(self.spend)}%){forecast}; alerted: {alerted}"
        )


def _alert_label(alert: BudgetAlert) -> str:
    return f"{alert.threshold}%" if alert.kind == BudgetAlert.Kind.THRESHOLD else "forecast"


def _claim(budget: Budget, period: date, kind: str, threshold: int, spend: Decimal,
           forecast_usd: Decimal | None, now: datetime) -> BudgetAlert | None:  # fmt: skip
    """Create the alert row, or None if it exists. Only the creator queues the email."""
    from usage import alerts

    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                budget=budget, period=period, kind=kind, threshold=threshold,
                spend_usd=spend, limit_usd=budget.monthly_limit_usd,
                forecast_usd=forecast_usd, created_at=now, next_attempt_at=now,
            )  # fmt: skip
    except IntegrityError:
        return None  # another evaluator created it first: it sends, we don't
    transaction.on_commit(lambda: alerts.queue_budget_alert(alert.pk), robust=True)
    return alert


def _evaluate(budget: Budget, now: datetime) -> BudgetCheck:
    period = period_start(now)
    daily = daily_spend(budget, now)
    spend = sum(daily.values(), Decimal(0))
    projected = forecast(budget, now, daily)
    check = BudgetCheck(budget, spend, projected)
    done = set(
        BudgetAlert.objects.filter(budget=budget, period=period).values_list("kind", "threshold")
    )
    # A raised limit leaves existing rows alone (no re-alert); a lowered one makes
    # more thresholds crossed, and those rows are created now.
    for threshold in budget.crossed_thresholds(spend):
        if (BudgetAlert.Kind.THRESHOLD, threshold) not in done:
            alert = _claim(budget, period, BudgetAlert.Kind.THRESHOLD, threshold, spend,
                           projected, now)  # fmt: skip
            if alert:
                check.alerts.append(alert)
    # Once spend is over the limit a forecast of overshooting it says nothing new.
    over = projected is not None and projected > budget.monthly_limit_usd
    if over and spend < budget.monthly_limit_usd:
        if (BudgetAlert.Kind.FORECAST, 0) not in done:
            alert = _claim(budget, period, BudgetAlert.Kind.FORECAST, 0, spend, projected, now)
            if alert:
                check.alerts.append(alert)
    return check


def evaluate_budget(budget: Budget, now: datetime | None = None) -> list[BudgetAlert]:
    """Create (and queue) the alerts this budget is due now; returns the new ones."""
    return _evaluate(budget, now or timezone.now()).alerts


def check_budgets(project_ids=None, now: datetime | None = None) -> list[BudgetCheck]:
    """Evaluate the budgets of these projects (None: all of them)."""
    now = now or timezone.now()
    budgets = Budget.objects.select_related("project", "environment").order_by("project_id", "id")
    if project_ids is not None:
        budgets = budgets.filter(project_id__in=list(project_ids))
    checks = []
    for budget in budgets:
        try:
            checks.append(_evaluate(budget, now))
        except Exception:
            # One broken budget must not keep every other project from its alerts.
            log.exception("could not evaluate budget %s", budget.pk)
    return checks


# Setting a budget


def environment_named(project: Project, name: str | None) -> Environment | None:
    if not name:
        return None
    name = name.strip()
    # Not a possible environment name (too long, NUL bytes Postgres refuses): none such.
    possible = len(name) <= 40 and "\x00" not in name
    environment = project.environments.filter(name=name).first() if possible else None
    if environment is None:
        raise ValidationError(f"{project.name} has no environment named '{name[:40]}'.")
    return environment


def budget_for(project: Project, environment: str | None = None) -> Budget:
    env = environment_named(project, environment)
    budget = Budget.objects.filter(project=project, environment=env).first()
    if budget is None:
        where = f"the {env.name} environment of " if env else ""
        raise Http404(f"There is no budget for {where}{project.name} yet.")
    return budget


def set_budget(
    project: Project,
    *,
    environment: Environment | None = None,
    monthly_limit_usd: Any,
    thresholds: Any = (80, 100),
    hard_limit: bool = False,
    extra_recipients: Any = (),
    notify_admins: bool = True,
    webhook_url: str | None = "",
    by: User | None = None,
    ip: str | None = None,
) -> Budget:
    """Create or update the budget of a project (or one environment), audit it, publish
    the hard limit for the gateway and evaluate it at once (a lowered limit alerts now).
    webhook_url=None keeps the webhook the budget has (the UI never shows it)."""
    if environment is not None and environment.project_id != project.pk:
        raise ValidationError("That environment belongs to another project.")
    if hard_limit and environment is not None:
        raise ValidationError(
            "A hard limit applies to the whole project: set it on the project-wide budget."
        )
    values = {
        "monthly_limit_usd": clean_limit(monthly_limit_usd),
        "thresholds": clean_thresholds(list(thresholds) if thresholds is not None else None),
        "hard_limit": bool(hard_limit),
        "extra_recipients": clean_recipients(list(extra_recipients or [])),
        "notify_admins": bool(notify_admins),
    }
    if webhook_url is not None:
        values["webhook_url"] = clean_webhook_url(webhook_url)
    with transaction.atomic():
        budget = (
            Budget.objects.select_for_update().filter(project=project, environment=environment)
        ).first()
        old = snapshot(budget)
        if budget is None:
            try:
                with transaction.atomic():
                    budget = Budget.objects.create(project=project, environment=environment,
                                                   **values)  # fmt: skip
            except IntegrityError:
                raise ValidationError("The budget was just created by someone else; "
                                      "load it and try again.") from None  # fmt: skip
        else:
            for name, value in values.items():
                setattr(budget, name, value)
            budget.updated_at = timezone.now()
            budget.save()
        audit.record("budget.set", actor=by, project=project, target=budget, ip=ip,
                     environment=environment.name if environment else None,
                     old=old, new=snapshot(budget))  # fmt: skip
    publish_budget_limit(project)
    evaluate_budget(budget)
    return budget


def remove_budget(budget: Budget, *, by: User | None = None, ip: str | None = None) -> None:
    project = budget.project
    with transaction.atomic():
        audit.record("budget.remove", actor=by, project=project, target=budget, ip=ip,
                     environment=budget.environment_name,
                     old=snapshot(budget))  # fmt: skip
        budget.delete()
    publish_budget_limit(project)


def hard_limit_units(project: Project | int) -> int | None:
    """The project's hard limit in units of 1e-10 USD, 0 for none; None without a budget."""
    project_id = project if isinstance(project, int) else project.pk
    budget = Budget.objects.filter(project_id=project_id, environment__isnull=True).first()
    if budget is None:
        return None
    return _limit_units(budget)


def _limit_units(budget: Budget) -> int:
    """What the gateway enforces for a project-wide budget: its limit, or 0 for none."""
    return to_units(budget.monthly_limit_usd) if budget.hard_limit else 0


def publish_budget_limit(project: Project | int) -> None:
    """Write the project's hard limit where the gateway reads it, so a raised limit lets
    calls through at once. Best effort: the beat republishes every limit."""
    project_id = project if isinstance(project, int) else project.pk
    units = hard_limit_units(project_id)
    key = budget_key(project_id)
    try:
        if units is None:
            get_redis().delete(key)
        else:
            get_redis().set(key, str(units))
        if not units:
            # Without a hard limit the gateway stops keeping the live spend counter:
            # drop it, so switching a limit on later rebuilds it from the rollups.
            get_redis().delete(live_key(project_id, month_of(timezone.now().timestamp())))
    except redis.RedisError:
        log.warning("could not publish the budget limit of project %s", project_id, exc_info=True)


def publish_all_budget_limits() -> int:
    """Rewrite every project-wide budget's limit (heals a flushed or stale Redis)."""
    budgets = Budget.objects.filter(environment__isnull=True)
    values = {budget_key(b.project_id): str(_limit_units(b)) for b in budgets}
    if values:
        try:
            get_redis().mset(values)
        except redis.RedisError:
            log.warning("could not publish budget limits", exc_info=True)
    return len(values)


# The periodic run: what the beat task and `manage.py check_budgets` do


@dataclass
class CheckRun:
    budgets: list[BudgetCheck]
    health: list[Any]  # HealthAlert episodes opened by this run
    requeued: int = 0  # alerts whose lost send task was queued again
    published: int = 0  # hard limits rewritten to Redis

    def as_dict(self) -> dict[str, Any]:
        return {
            "budgets": len(self.budgets),
            "alerts": [a.pk for c in self.budgets for a in c.alerts],
            "health_alerts": [a.pk for a in self.health],
            "requeued": self.requeued,
            "published": self.published,
        }


def run_checks(project_ids=None, now: datetime | None = None) -> CheckRun:
    """Budgets of these projects (None: all), plus — on a full run — health alerts,
    the sweep for lost alert tasks and republishing every hard limit."""
    from usage import alerts, health

    run = CheckRun(budgets=check_budgets(project_ids, now), health=[])
    if project_ids is None:
        run.health = health.check_health(None, now)
        run.requeued = alerts.requeue_unsent(now)
        run.published = publish_all_budget_limits()
    return run
