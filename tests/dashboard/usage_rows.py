"""Rollup rows written directly, for the dashboard tests: one call bucket becomes one
HourlyUsage and one DailyUsage row with the same sums, as the flush would write them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings

from accounts.models import Project
from usage.models import DailyUsage, HourlyUsage


def add_usage(
    project: Project,
    day: date,
    *,
    environment: str = "production",
    model: str = "gpt-4o-mini",
    calls: int = 10,
    cost: Decimal | str = "0.01",
    hour: int = 12,
    key_id: int = 0,
    token_id: int = 0,
    errors: int = 0,
    input_tokens: int = 1000,
    cached_input_tokens: int = 0,
    output_tokens: int = 3000,
    reasoning_tokens: int = 0,
    unpriced_calls: int = 0,
    latency_ms_sum: int | None = None,
    latency_ms_max: int = 900,
) -> None:
    env = project.environments.get(name=environment)
    sums = dict(
        calls=calls, errors=errors, input_tokens=input_tokens,
        cached_input_tokens=cached_input_tokens, output_tokens=output_tokens,
        reasoning_tokens=reasoning_tokens, cost_usd=Decimal(cost), unpriced_calls=unpriced_calls,
        latency_ms_sum=latency_ms_sum if latency_ms_sum is not None else calls * 400,
        latency_ms_max=latency_ms_max,
    )  # fmt: skip
    bucket = dict(project=project, environment=env, key_id=key_id, token_id=token_id, model=model)
    at = datetime.combine(day, time(hour), tzinfo=ZoneInfo(settings.TIME_ZONE)).astimezone(UTC)
    HourlyUsage.objects.create(**bucket, hour=at, **sums)
    daily = DailyUsage.objects.filter(**bucket, day=day).first()
    if daily is None:
        DailyUsage.objects.create(**bucket, day=day, **sums)
        return
    for field, value in sums.items():
        current = getattr(daily, field)
        setattr(daily, field, max(current, value) if field == "latency_ms_max" else current + value)
    daily.save()


def days_ago(n: int, today: date | None = None) -> date:
    from dashboard.charts import today as local_today

    return (today or local_today()) - timedelta(days=n)
