from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Environment, GatewayToken, Project, ProviderKey, User

# Money: USD, exact to 1e-10; a month of a big org still fits in 14 integer digits.
MONEY: dict[str, Any] = {"max_digits": 24, "decimal_places": 10}
PRICE: dict[str, Any] = {"max_digits": 16, "decimal_places": 8, "null": True, "blank": True}


class ModelPrice(models.Model):
    """A model's list price from `effective_from` on, per 1M tokens (audio per minute).

    A price change is a new row with a later `effective_from`: calls are costed at the
    price in force when they were made, so the past is never rewritten. `match_pattern`
    (a regex) lets one row price dated snapshots such as gpt-4o-2024-08-06.
    """

    model = models.CharField(_("model"), max_length=100)
    match_pattern = models.CharField(_("match pattern"), max_length=200, blank=True)
    effective_from = models.DateTimeField(_("effective from"), default=timezone.now)
    input_per_1m = models.DecimalField(_("input / 1M"), **PRICE)
    cached_input_per_1m = models.DecimalField(_("cached input / 1M"), **PRICE)
    output_per_1m = models.DecimalField(_("output / 1M"), **PRICE)
    batch_input_per_1m = models.DecimalField(_("batch input / 1M"), **PRICE)
    batch_output_per_1m = models.DecimalField(_("batch output / 1M"), **PRICE)
    audio_per_minute = models.DecimalField(_("audio / minute"), **PRICE)
    source = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(User, models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="modelprice_unique")
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"


class ApiCall(models.Model):
    """One call, as the gateway or the ingest API saw it. No prompt or completion text.

    cost_usd is NULL when the model had no price: the call is *unpriced*, never $0.
    """

    class Source(models.TextChoices):
        GATEWAY = "gateway", _("gateway")
        INGEST = "ingest", _("ingest API")

    request_id = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(db_index=True)
    project = models.ForeignKey(Project, models.CASCADE, related_name="+")
    environment = models.ForeignKey(Environment, models.CASCADE, related_name="+")
    provider_key = models.ForeignKey(
        ProviderKey, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    gateway_token = models.ForeignKey(
        GatewayToken, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.GATEWAY)
    endpoint = models.CharField(max_length=100)
    model = models.CharField(max_length=100, blank=True)
    status_code = models.PositiveSmallIntegerField(default=200)
    stream = models.BooleanField(default=False)
    batch = models.BooleanField(default=False)
    input_tokens = models.PositiveBigIntegerField(default=0)
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    audio_seconds = models.DecimalField(max_digits=14, decimal_places=3, default=Decimal(0))
    cost_usd = models.DecimalField(**MONEY, null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    ttfb_ms = models.PositiveIntegerField(null=True, blank=True)
    error_type = models.CharField(max_length=100, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "created_at"], name="apicall_project_time")]

    def __str__(self) -> str:
        return f"{self.request_id} {self.endpoint} {self.model}"


class UsageRollup(models.Model):
    """Sums of ApiCall rows per project, environment, key, token, model and bucket.

    key_id and token_id are plain integers with 0 for "none", so the unique key has
    no NULLs and the flush can upsert with ON CONFLICT on every database.
    """

    project = models.ForeignKey(Project, models.CASCADE, related_name="+")
    environment = models.ForeignKey(Environment, models.CASCADE, related_name="+")
    key_id = models.BigIntegerField(default=0)
    token_id = models.BigIntegerField(default=0)
    model = models.CharField(max_length=100, blank=True)
    calls = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    audio_seconds = models.DecimalField(max_digits=18, decimal_places=3, default=Decimal(0))
    cost_usd = models.DecimalField(**MONEY, default=Decimal(0))
    unpriced_calls = models.BigIntegerField(default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    latency_ms_max = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class HourlyUsage(UsageRollup):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "environment", "key_id", "token_id", "model", "hour"],
                name="hourlyusage_unique_bucket",
            )
        ]
        indexes = [models.Index(fields=["project", "hour"], name="hourlyusage_project_hour")]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.environment_id} {self.model} {self.hour:%Y-%m-%d %H}h"


class DailyUsage(UsageRollup):
    """Days are calendar days in settings.TIME_ZONE, like budget periods."""

    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "environment", "key_id", "token_id", "model", "day"],
                name="dailyusage_unique_bucket",
            )
        ]
        indexes = [models.Index(fields=["project", "day"], name="dailyusage_project_day")]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.environment_id} {self.model} {self.day}"


class ProviderDailyUsage(models.Model):
    """What the provider's organization usage/costs API reports, per day: the bill
    to compare gateway-counted spend against."""

    project = models.ForeignKey(Project, models.CASCADE, null=True, blank=True, related_name="+")
    provider_project_id = models.CharField(max_length=100, blank=True)
    day = models.DateField()
    model = models.CharField(max_length=100, blank=True)
    line_item = models.CharField(max_length=200, blank=True)
    requests = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, null=True, blank=True)
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider_project_id", "day", "model", "line_item"],
                name="providerdailyusage_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider_project_id} {self.day} {self.model or self.line_item}"


# Budgets and alerts (rules in usage/budgets.py, delivery in usage/alerts.py)


def default_thresholds() -> list[int]:
    return [80, 100]


class Budget(models.Model):
    """A monthly spend limit for a project, or for one of its environments.

    The period is the calendar month in settings.TIME_ZONE. Spend is always read for
    the current period's days, so a new month starts at zero without any reset job.
    """

    project = models.ForeignKey(Project, models.CASCADE, related_name="budgets")
    environment = models.ForeignKey(
        Environment, models.CASCADE, null=True, blank=True, related_name="budgets",
        help_text=_("empty: the whole project"),
    )  # fmt: skip
    monthly_limit_usd = models.DecimalField(_("monthly limit (USD)"), max_digits=18,
                                            decimal_places=2)  # fmt: skip
    thresholds = models.JSONField(_("alert thresholds (%)"), default=default_thresholds)
    hard_limit = models.BooleanField(_("refuse calls over the limit"), default=False)
    extra_recipients = models.JSONField(_("extra recipients"), default=list, blank=True)
    notify_admins = models.BooleanField(_("email the project's admins"), default=True)
    webhook_url = models.URLField(_("webhook URL"), max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "environment"], name="budget_unique_environment"
            ),
            # NULLs are distinct in a unique index: one project-wide budget needs its own.
            models.UniqueConstraint(
                fields=["project"],
                condition=models.Q(environment__isnull=True),
                name="budget_unique_project_wide",
            ),  # fmt: skip
            models.CheckConstraint(
                condition=models.Q(monthly_limit_usd__gt=0), name="budget_limit_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} ({self.environment_name or 'all environments'})"

    @property
    def environment_name(self) -> str | None:
        return self.environment.name if self.environment is not None else None

    # The rules live in usage.budgets; these methods are the model's face of them.

    def period_start(self, now: datetime | None = None) -> date:
        from usage import budgets

        return budgets.period_start(now)

    def period_end(self, now: datetime | None = None) -> date:
        from usage import budgets

        return budgets.period_end(now)

    def spend_this_period(self, now: datetime | None = None) -> Decimal:
        from usage import budgets

        return budgets.spend_between(self, self.period_start(now), self.period_end(now))

    def crossed_thresholds(self, spend: Decimal) -> list[int]:
        """The thresholds (percent) that `spend` has reached, lowest first."""
        return [t for t in sorted(self.thresholds) if spend * 100 >= self.monthly_limit_usd * t]

    def percent(self, spend: Decimal) -> Decimal:
        return (spend * 100 / self.monthly_limit_usd).quantize(Decimal("0.1"))

    def forecast(self, now: datetime | None = None) -> Decimal | None:
        from usage import budgets

        return budgets.forecast(self, now)


class BudgetAlert(models.Model):
    """One alert of one budget in one period. The unique constraint is what makes an
    alert exactly-once: only the evaluator whose INSERT created the row sends it."""

    class Kind(models.TextChoices):
        THRESHOLD = "threshold", _("threshold")
        FORECAST = "forecast", _("forecast")

    budget = models.ForeignKey(Budget, models.CASCADE, related_name="alerts")
    period = models.DateField()  # first day of the month in settings.TIME_ZONE
    kind = models.CharField(max_length=10, choices=Kind.choices)
    threshold = models.PositiveSmallIntegerField(default=0)  # percent; 0 for forecast
    spend_usd = models.DecimalField(**MONEY)
    limit_usd = models.DecimalField(max_digits=18, decimal_places=2)
    forecast_usd = models.DecimalField(**MONEY, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    # Retries are scheduled for this time; a sweep re-queues alerts whose retry was lost.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_to = models.JSONField(default=list, blank=True)  # so a retry skips them
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    webhook_attempts = models.PositiveIntegerField(default=0)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period", "kind", "threshold"], name="budgetalert_once"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(sent_at__isnull=True),
                name="budgetalert_unsent",
            )  # fmt: skip
        ]

    def __str__(self) -> str:
        what = f"{self.threshold}%" if self.kind == self.Kind.THRESHOLD else "forecast"
        return f"{self.budget.project} {self.period:%Y-%m} {what}"


class HealthAlert(models.Model):
    """One episode of an unhealthy project: opened when a condition starts, closed when
    it clears. At most one open episode per (project, kind, episode_key) — the partial
    unique constraint — so each episode alerts once however many checks see it."""

    class Kind(models.TextChoices):
        SUCCESS_RATE = "success_rate", _("success rate")
        LATENCY = "latency", _("latency")
        UNPRICED_MODEL = "unpriced_model", _("unpriced model")

    project = models.ForeignKey(Project, models.CASCADE, related_name="health_alerts")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    episode_key = models.CharField(max_length=100, blank=True)  # the model, for unpriced
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_to = models.JSONField(default=list, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "kind", "episode_key"],
                condition=models.Q(closed_at__isnull=True),
                name="healthalert_one_open_episode",
            )  # fmt: skip
        ]

    def __str__(self) -> str:
        return f"{self.project} {self.kind} {self.episode_key} {self.opened_at:%Y-%m-%d %H:%M}"
