"""JSON API of the usage app: the ingest endpoint (km_ token) and the spend report.

Mounted at /api/v1/ by dashboard/api.py. The ingest endpoint has its own auth: the
gateway token of the environment whose calls it reports, like the gateway itself.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from ninja.security import HttpBearer

from accounts import audit, tokens
from accounts.access import project_for_user
from accounts.models import GatewayToken, Role
from usage import budgets, pipeline, pricing, provider_import, rollups
from usage.records import CallRecord

router = Router(tags=["usage"])

MAX_RANGE_DAYS = 400
EARLIEST = datetime(2020, 1, 1, tzinfo=UTC)
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
                "total_tokens")  # fmt: skip


class GatewayTokenAuth(HttpBearer):
    """Authorization: Bearer km_… → request.auth is the GatewayToken."""

    def __call__(self, request: HttpRequest) -> GatewayToken:
        token = super().__call__(request)
        if token is None:
            raise HttpError(401, "Send a gateway token: Authorization: Bearer km_…")
        return token

    def authenticate(self, request: HttpRequest, token: str) -> GatewayToken | None:
        return tokens.gateway_token_for(token.strip())


class UsageIn(Schema):
    model: str = Field(min_length=1, max_length=100)
    usage: dict[str, Any] = Field(description="the usage object exactly as the SDK returned it")
    request_id: str | None = Field(default=None, min_length=1, max_length=80)
    created: int | float | str | None = Field(
        default=None, description="unix seconds or ISO 8601 (UTC when no offset); default now"
    )


class AcceptedOut(Schema):
    request_id: str


class ErrorOut(Schema):
    detail: str


def _created_at(value: int | float | str | None) -> float:
    now = datetime.now(UTC)
    if value is None:
        return now.timestamp()
    if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        value = float(value)
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise HttpError(400, "created must be unix seconds or an ISO 8601 time.") from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    else:
        if not math.isfinite(value):
            raise HttpError(400, "created must be unix seconds or an ISO 8601 time.")
        try:
            when = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise HttpError(400, "created is out of range.") from None
    if not EARLIEST <= when <= now + timedelta(days=1):
        raise HttpError(400, "created must be between 2020-01-01 and now.")
    return when.timestamp()


def _check_usage(usage: dict[str, Any]) -> None:
    if not any(name in usage for name in (*TOKEN_FIELDS, "seconds")):
        raise HttpError(
            400, "usage must be the usage object the SDK returned, with prompt_tokens/"
            "completion_tokens or input_tokens/output_tokens."
        )  # fmt: skip
    for name in TOKEN_FIELDS:
        value = usage.get(name)
        if value is not None and (type(value) is not int or value < 0):
            raise HttpError(400, f"usage.{name} must be a non-negative integer.")
    seconds = usage.get("seconds")
    if seconds is not None and (type(seconds) not in (int, float) or not 0 <= seconds < 10**11):
        raise HttpError(400, "usage.seconds must be a non-negative number.")


def _endpoint(usage: dict[str, Any]) -> str:
    if "input_tokens" in usage or "output_tokens" in usage:
        return "/v1/responses"
    if "seconds" in usage:
        return "/v1/audio/transcriptions"
    if "completion_tokens" not in usage:
        return "/v1/embeddings"
    return "/v1/chat/completions"


@router.post(
    "/usage",
    auth=GatewayTokenAuth(),
    response={202: AcceptedOut, 400: ErrorOut, 401: ErrorOut},
    summary="Report a call made directly with the SDK",
)
def ingest_usage(request: HttpRequest, payload: UsageIn):
    """Counted once per request_id within the project; queued, so it shows up within seconds."""
    token: GatewayToken = request.auth  # type: ignore[assignment]
    if payload.request_id is not None and not payload.request_id.isprintable():
        raise HttpError(400, "request_id must be printable text.")
    _check_usage(payload.usage)
    request_id = payload.request_id or f"ing_{uuid.uuid4().hex}"
    record = CallRecord(
        # Namespaced by project, so one project's ids can never shadow another's.
        request_id=f"{token.project_id}:{request_id}",
        created_at=_created_at(payload.created),
        project_id=token.project_id,
        environment_id=token.environment_id,
        provider_key_id=None,
        gateway_token_id=token.pk,
        endpoint=_endpoint(payload.usage),
        source="ingest",
        model=payload.model.strip(),
    )
    record.add_usage(payload.usage)
    pipeline.enqueue(record)
    return Status(202, {"request_id": request_id})


def _day(value: str | None, name: str, default: date) -> date:
    if value is None or value == "":
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{name} must be a date like 2026-04-01.") from None


@router.get(
    "/projects/{slug}/spend",
    response={200: dict[str, Any], 400: ErrorOut, 403: ErrorOut, 404: ErrorOut},
    summary="Spend from the daily rollups",
)
def project_spend(
    request: HttpRequest,
    slug: str,
    start: str | None = None,
    end: str | None = None,
    group_by: str = "day",
    include_provider: bool = False,
):
    """Rows per day, model, environment or key between start and end (inclusive, days in
    the server's TIME_ZONE; default: this month to date). cost_usd is a decimal string.
    include_provider=true (group_by=day) adds the provider's imported cost per day as
    provider_cost_usd (decimal string, null when the provider reported nothing)."""
    project, _ = project_for_user(request.auth, slug)
    if group_by not in rollups.GROUPS:
        raise ValidationError(f"group_by must be one of: {', '.join(rollups.GROUPS)}.")
    today = datetime.now(ZoneInfo(settings.TIME_ZONE)).date()
    end_day = _day(end, "end", today)
    start_day = _day(start, "start", end_day.replace(day=1) if end else today.replace(day=1))
    if start_day > end_day:
        raise ValidationError("start must not be after end.")
    if (end_day - start_day).days + 1 > MAX_RANGE_DAYS:
        raise ValidationError(f"Ask for at most {MAX_RANGE_DAYS} days at a time.")
    if include_provider and group_by != "day":
        raise ValidationError("include_provider needs group_by=day.")
    report = rollups.spend_report(project, start_day, end_day, group_by)
    if include_provider:
        provider_import.add_provider_costs(report, project, start_day, end_day)
    return report


# Budgets (rules in usage/budgets.py)


class BudgetIn(Schema):
    monthly_limit_usd: Decimal = Field(description='USD per calendar month, e.g. "100.00"')
    thresholds: list[int] = Field(
        default_factory=lambda: [80, 100], description="percent of the limit that alert, 1–1000"
    )
    hard_limit: bool = Field(default=False, description="the gateway refuses calls over it")
    recipients: list[str] = Field(
        default_factory=list, description="extra email addresses besides the admins"
    )
    notify_admins: bool = True
    webhook_url: str = Field(default="", description="optional JSON POST receiver; never shown")


@router.get(
    "/projects/{slug}/budget",
    response={200: dict[str, Any], 400: ErrorOut, 403: ErrorOut, 404: ErrorOut},
    summary="The budget, with this month's spend, percent and forecast",
)
def get_budget(request: HttpRequest, slug: str, environment: str | None = None):
    """Money is a decimal string; forecast_usd is null until 3 days of data this month."""
    project, _ = project_for_user(request.auth, slug)
    return budgets.budget_summary(budgets.budget_for(project, environment))


@router.put(
    "/projects/{slug}/budget",
    response={200: dict[str, Any], 400: ErrorOut, 403: ErrorOut, 404: ErrorOut},
    summary="Set the project's (or ?environment=) monthly budget; admins only",
)
def put_budget(request: HttpRequest, slug: str, payload: BudgetIn, environment: str | None = None):
    project, _ = project_for_user(request.auth, slug, Role.ADMIN)
    budget = budgets.set_budget(
        project, environment=budgets.environment_named(project, environment),
        monthly_limit_usd=payload.monthly_limit_usd, thresholds=payload.thresholds,
        hard_limit=payload.hard_limit, extra_recipients=payload.recipients,
        notify_admins=payload.notify_admins, webhook_url=payload.webhook_url,
        by=request.auth, ip=audit.client_ip(request),
    )  # fmt: skip
    return budgets.budget_summary(budget)


@router.delete(
    "/projects/{slug}/budget",
    response={204: None, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut},
    summary="Remove the budget (and its hard limit); admins only",
)
def delete_budget(request: HttpRequest, slug: str, environment: str | None = None):
    project, _ = project_for_user(request.auth, slug, Role.ADMIN)
    budgets.remove_budget(budgets.budget_for(project, environment), by=request.auth,
                          ip=audit.client_ip(request))  # fmt: skip
    return Status(204, None)


# Prices (rules in usage/pricing.py). Prices are global: everyone reads, staff change.


class PriceIn(Schema):
    model: str = Field(min_length=1, max_length=100)
    effective_from: str | None = Field(
        default=None, description="ISO date (00:00 UTC) or date-time; default now"
    )
    input_per_1m: str | None = Field(default=None, description='USD per 1M tokens, e.g. "0.15"')
    cached_input_per_1m: str | None = None
    output_per_1m: str | None = None
    batch_input_per_1m: str | None = None
    batch_output_per_1m: str | None = None
    audio_per_minute: str | None = None
    match_pattern: str | None = Field(
        default=None, max_length=200, description="regex for other names; default: kept"
    )


class PriceOut(Schema):
    model: str
    effective_from: datetime
    input_per_1m: str | None
    cached_input_per_1m: str | None
    output_per_1m: str | None
    batch_input_per_1m: str | None
    batch_output_per_1m: str | None
    audio_per_minute: str | None
    match_pattern: str
    source: str


def _decimal_str(value: Decimal | None) -> str | None:
    # "0.15000000" → "0.15", never exponent notation: what was PUT comes back.
    return None if value is None else format(value.normalize(), "f")


def _price_out(row) -> dict[str, Any]:
    out = {f: _decimal_str(getattr(row, f)) for f in pricing.PRICE_FIELDS}
    return {"model": row.model, "effective_from": row.effective_from,
            "match_pattern": row.match_pattern, "source": row.source, **out}  # fmt: skip


def _effective_from(value: str | None) -> datetime | date | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError("effective_from must be a date like 2026-04-01 or an ISO "
                              "8601 date-time.") from None  # fmt: skip
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@router.get("/prices", response={200: list[PriceOut], 401: ErrorOut}, tags=["prices"],
            summary="The price table: prices in force now (history=true: every row)")  # fmt: skip
def list_prices(request: HttpRequest, history: bool = False):
    """Money is a decimal string per 1M tokens (audio per minute); null = no price."""
    from usage.models import ModelPrice

    rows = list(ModelPrice.objects.order_by("model", "effective_from"))
    if not history:
        book, now = pricing.PriceBook(rows), datetime.now(UTC)
        current = {book.exact_price(r.model, now) for r in rows}
        rows = [r for r in rows if r in current]
    return [_price_out(r) for r in rows]


@router.put("/prices", response={200: list[PriceOut], 400: ErrorOut, 401: ErrorOut,
                                 403: ErrorOut}, tags=["prices"],
            summary="Add prices, each from its effective date on (staff only)")  # fmt: skip
def put_prices(request: HttpRequest, payload: list[PriceIn]):
    """All or nothing: one bad entry rejects the whole list. Earlier prices stay, so
    calls made before an entry's effective date keep the price they were made at."""
    user = request.auth  # type: ignore[attr-defined]
    if not getattr(user, "is_staff", False):
        raise PermissionDenied("Prices apply to every project: only staff can change them.")
    if not payload:
        raise ValidationError("Send a list of at least one price.")
    created = []
    with transaction.atomic():
        for index, item in enumerate(payload):
            prices = {f: getattr(item, f) for f in pricing.PRICE_FIELDS
                      if getattr(item, f) is not None}  # fmt: skip
            try:
                created.append(pricing.set_price(
                    item.model, _effective_from(item.effective_from), by=user,
                    match_pattern=item.match_pattern, source="api",
                    ip=audit.client_ip(request), **prices,
                ))  # fmt: skip
            except ValidationError as exc:
                raise ValidationError(f"Entry {index} ({item.model[:100]}): "
                                      f"{_messages(exc)}") from None  # fmt: skip
    return [_price_out(r) for r in created]


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return " ".join(f"{field}: {' '.join(errs)}"
                        for field, errs in exc.message_dict.items())  # fmt: skip
    return " ".join(exc.messages)
