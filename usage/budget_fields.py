"""Cleaning a budget's fields (for set_budget) and showing a budget (for the API)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.utils import timezone

from usage.models import Budget, BudgetAlert
from usage.rollups import money_str

MAX_THRESHOLDS = 10
MAX_RECIPIENTS = 20
WEBHOOK_URL_MAX = 500  # Budget.webhook_url's max_length
CENT = Decimal("0.01")


def clean_limit(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError("monthly_limit_usd must be an amount in USD, like 100.00.") from None
    if not amount.is_finite() or amount <= 0:
        raise ValidationError("monthly_limit_usd must be more than 0.")
    # Before quantize(): a huge amount would overflow the decimal context there.
    if amount >= Decimal(10) ** 16:
        raise ValidationError("monthly_limit_usd is too large.")
    if amount != amount.quantize(CENT):
        raise ValidationError("monthly_limit_usd can have at most 2 decimal places (cents).")
    return amount.quantize(CENT)


def clean_thresholds(values: Any) -> list[int]:
    if not isinstance(values, list | tuple) or not values:
        raise ValidationError("thresholds must be a list of percentages, like [80, 100].")
    if len(values) > MAX_THRESHOLDS:
        raise ValidationError(f"Set at most {MAX_THRESHOLDS} thresholds.")
    for value in values:
        if type(value) is not int or not 1 <= value <= 1000:
            raise ValidationError("Each threshold must be a whole percentage from 1 to 1000.")
    return sorted(set(values))


def clean_recipients(values: Any) -> list[str]:
    if not isinstance(values, list | tuple):
        raise ValidationError("recipients must be a list of email addresses.")
    cleaned: list[str] = []
    for value in values:
        address = str(value).strip().lower()
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(f"'{str(value)[:100]}' is not an email address.") from None
        if address not in cleaned:
            cleaned.append(address)
    if len(cleaned) > MAX_RECIPIENTS:
        raise ValidationError(f"Add at most {MAX_RECIPIENTS} extra recipients.")
    return cleaned


def clean_webhook_url(value: str) -> str:
    value = (value or "").strip()
    if value:
        try:
            URLValidator(schemes=["http", "https"])(value)
        except ValidationError:
            raise ValidationError("webhook_url must be an http(s) URL.") from None
        if len(value) > WEBHOOK_URL_MAX:
            raise ValidationError("webhook_url is too long.")
    return value


def snapshot(budget: Budget | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    # The webhook URL often carries a token (Slack): the audit log keeps its host only.
    return {
        "monthly_limit_usd": str(budget.monthly_limit_usd),
        "thresholds": list(budget.thresholds),
        "hard_limit": budget.hard_limit,
        "extra_recipients": list(budget.extra_recipients),
        "notify_admins": budget.notify_admins,
        "webhook_host": urlsplit(budget.webhook_url).hostname if budget.webhook_url else None,
    }


def budget_summary(budget: Budget, now: datetime | None = None) -> dict[str, Any]:
    """The API's view of a budget: settings, this period's spend, percent and forecast."""
    from usage import budgets

    now = now or timezone.now()
    daily = budgets.daily_spend(budget, now)
    spend = sum(daily.values(), Decimal(0))
    projected = budgets.forecast(budget, now, daily)
    period = budgets.period_start(now)
    sent = BudgetAlert.objects.filter(budget=budget, period=period).order_by("id")
    return {
        "project": budget.project.slug,
        "environment": budget.environment_name,
        "monthly_limit_usd": str(budget.monthly_limit_usd),
        "thresholds": list(budget.thresholds),
        "hard_limit": budget.hard_limit,
        "recipients": list(budget.extra_recipients),
        "notify_admins": budget.notify_admins,
        "webhook": bool(budget.webhook_url),  # the URL itself may hold a token: never shown
        "period_start": period.isoformat(),
        "period_end": budgets.period_end(now).isoformat(),
        "spend_this_period": money_str(spend),
        "percent": str(budget.percent(spend)),
        "forecast_usd": money_str(projected) if projected is not None else None,
        "alerts": [
            {
                "kind": a.kind,
                "threshold": a.threshold,
                "created_at": a.created_at.isoformat(),
                "sent": a.sent_at is not None,
            }  # fmt: skip
            for a in sent
        ],
    }
