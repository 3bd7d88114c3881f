from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Environment, GatewayToken, Project, ProviderKey, User

# Money: USD, exact to 1e-10; a month of a big org still fits in 14 integer digits.
MONEY = {"max_digits": 24, "decimal_places": 10}
PRICE = {"max_digits": 16, "decimal_places": 8, "null": True, "blank": True}


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

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    @property
    def is_unpriced(self) -> bool:
        return self.cost_usd is None


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
