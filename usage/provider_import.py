"""Import the provider's own daily usage and cost reports (organization API, admin key).

Every active admin key is asked for its organization's completions usage (grouped by
project and model) and costs (grouped by project and line item) in 1-day UTC buckets.
The figures are upserted into ProviderDailyUsage, one row per (provider project, day,
model, line item): importing the same days again replaces their numbers, never adds
them twice. A key's import is all or nothing, so a failure half-way through leaves the
previous figures in place.

The admin key's plaintext lives only in the Authorization header of the request;
logs and errors name a key by `key.masked`.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.models import Project, ProviderKey
from usage.models import ProviderDailyUsage

logger = logging.getLogger(__name__)

USAGE_PATH = "/organization/usage/completions"
COSTS_PATH = "/organization/costs"
USAGE_LIMIT = 31  # the most 1d buckets the usage endpoint returns per page
COSTS_LIMIT = 180  # the most the costs endpoint returns per page
MAX_PAGES = 500  # a provider that says has_more forever must not loop us forever
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")

FIELDS = ("requests", "input_tokens", "cached_input_tokens", "output_tokens", "cost_usd")
RowKey = tuple[str, date, str, str]  # provider_project_id, day, model, line_item


class KeyRejected(Exception):
    """The provider answered 401: the admin key is revoked or wrong."""


class ImportFailed(Exception):
    """The provider could not be read; the message never contains the key."""


def import_provider_usage(
    start: date, end: date, *, client: httpx.Client | None = None
) -> dict[str, int]:
    """Import the UTC days start…end (inclusive) with every active admin key.

    Returns counts: keys asked, keys imported, keys rejected (401), keys failed
    (network errors, 5xx after retries, unreadable answers), usage and cost rows stored.
    """
    if start > end:
        raise ValueError("start must be on or before end")
    counts = {"keys": 0, "imported": 0, "rejected": 0, "failed": 0, "usage_rows": 0, "cost_rows": 0}
    keys = ProviderKey.objects.filter(
        kind=ProviderKey.Kind.ADMIN, status=ProviderKey.Status.ACTIVE
    ).order_by("pk")
    own_client = client is None
    http = client or httpx.Client(timeout=TIMEOUT)
    seen: set[tuple[str, str]] = set()
    try:
        for key in keys:
            # The same admin key stored in two projects reports the same organization.
            if (key.base_url, key.fingerprint) in seen:
                continue
            seen.add((key.base_url, key.fingerprint))
            counts["keys"] += 1
            try:
                rows = _fetch(http, key, start, end)
            except KeyRejected:
                counts["rejected"] += 1
                logger.warning(
                    "admin key %s (%s, project %s) rejected by the provider (401); skipped",
                    key.masked,
                    key.name,
                    key.project_id,
                )
                continue
            except ImportFailed as exc:
                counts["failed"] += 1
                logger.warning(
                    "provider usage import with admin key %s (%s) failed: %s",
                    key.masked,
                    key.name,
                    exc,
                )
                continue
            with transaction.atomic():
                _save(rows)
                key.last_used_at = timezone.now()
                key.save(update_fields=["last_used_at"])
            counts["imported"] += 1
            counts["usage_rows"] += sum(1 for k in rows if not k[3])
            counts["cost_rows"] += sum(1 for k in rows if k[3])
    finally:
        if own_client:
            http.close()
    return counts


def provider_daily_costs(project: Project, start: date, end: date) -> dict[date, Decimal]:
    """The provider's cost for this project per UTC day; days it reported nothing are absent."""
    match = Q(project=project)
    if project.provider_project_id:
        # Rows imported before the project was linked count too.
        match |= Q(provider_project_id=project.provider_project_id)
    totals = (
        ProviderDailyUsage.objects.filter(
            match, day__gte=start, day__lte=end, cost_usd__isnull=False
        )
        .values("day")
        .annotate(total=Sum("cost_usd"))
        .order_by("day")
    )
    return {row["day"]: row["total"] for row in totals}


def add_provider_costs(report: dict[str, Any], project: Project, start: date, end: date) -> None:
    """Put the provider's cost beside each day of a group_by=day spend report.

    provider_cost_usd is a decimal string, or None where the provider reported nothing.
    Days the provider billed but the gateway never saw get a row of their own: that gap
    is what the comparison is for.
    """
    from usage import rollups

    costs = provider_daily_costs(project, start, end)
    rows = {row["day"]: row for row in report["rows"]}
    empty = {field: 0 for field in rollups.REPORT_FIELDS} | {"cost_usd": rollups.money_str(None)}
    for day in costs:
        rows.setdefault(day.isoformat(), {"day": day.isoformat(), **empty})
    for day, row in rows.items():
        cost = costs.get(date.fromisoformat(day))
        row["provider_cost_usd"] = None if cost is None else rollups.money_str(cost)
    report["rows"] = [rows[day] for day in sorted(rows)]
    report["totals"]["provider_cost_usd"] = rollups.money_str(sum(costs.values(), Decimal(0)))
    report["provider_days"] = "UTC"  # the provider buckets by UTC day


def utc_days_back(days: int, today: date | None = None) -> tuple[date, date]:
    """(start, end) covering the last `days` UTC days, today included."""
    end = today or datetime.now(UTC).date()
    return end - timedelta(days=max(days, 1) - 1), end


# Fetching ---------------------------------------------------------------------------


def _fetch(http: httpx.Client, key: ProviderKey, start: date, end: date) -> dict[RowKey, dict]:
    rows: dict[RowKey, dict] = {}
    window = [("start_time", str(_unix(start)))]
    end_time = _unix(end + timedelta(days=1))
    if end_time < time.time():
        # A future end_time gains nothing: without it the provider reports up to now.
        window.append(("end_time", str(end_time)))
    usage_query = window + [
        ("bucket_width", "1d"),
        ("group_by", "project_id"),
        ("group_by", "model"),
        ("limit", str(USAGE_LIMIT)),
    ]
    for page in _pages(http, key, USAGE_PATH, usage_query):
        for day, result in _results(page, start, end):
            row = _row(
                rows,
                (_text(result.get("project_id"), 100), day, _text(result.get("model"), 100), ""),
            )
            row["requests"] += _int(result.get("num_model_requests"))
            row["input_tokens"] += _int(result.get("input_tokens"))
            row["cached_input_tokens"] += _int(result.get("input_cached_tokens"))
            row["output_tokens"] += _int(result.get("output_tokens"))
    costs_query = window + [
        ("bucket_width", "1d"),
        ("group_by", "project_id"),
        ("group_by", "line_item"),
        ("limit", str(COSTS_LIMIT)),
    ]
    for page in _pages(http, key, COSTS_PATH, costs_query):
        for day, result in _results(page, start, end):
            amount = _amount(result.get("amount"))
            if amount is None:
                continue
            row = _row(
                rows,
                (
                    _text(result.get("project_id"), 100),
                    day,
                    "",
                    _text(result.get("line_item"), 200),
                ),
            )
            row["cost_usd"] = (row["cost_usd"] or Decimal(0)) + amount
    return rows


def _pages(
    http: httpx.Client, key: ProviderKey, path: str, query: list[tuple[str, str]]
) -> Iterator[dict]:
    url = key.base_url.rstrip("/") + path
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        body = _get(http, key, url, query + ([("page", cursor)] if cursor else []))
        yield body
        if not body.get("has_more"):
            return
        cursor = body.get("next_page")
        if not isinstance(cursor, str) or not cursor or cursor in seen:
            raise ImportFailed(f"{path}: has_more without a new next_page cursor")
        seen.add(cursor)
    raise ImportFailed(f"{path}: more than {MAX_PAGES} pages")


@sensitive_variables("headers")
def _get(http: httpx.Client, key: ProviderKey, url: str, query: list[tuple[str, str]]) -> dict:
    path = httpx.URL(url).path
    attempts = max(1, int(getattr(settings, "PROVIDER_IMPORT_ATTEMPTS", 3)))
    problem = ""
    for attempt in range(1, attempts + 1):
        headers = {"Authorization": f"Bearer {key.reveal_secret()}", "Accept": "application/json"}
        retry_after = None
        try:
            response = http.get(url, params=tuple(query), headers=headers)
        except httpx.HTTPError as exc:
            # Only the class name: some transport errors repeat request details.
            problem = f"{type(exc).__name__} on {path}"
        else:
            if response.status_code == 401:
                raise KeyRejected
            if response.status_code < 300:
                return _json(response, path)
            problem = f"HTTP {response.status_code} on {path}{_error_code(response)}"
            if response.status_code not in RETRY_STATUSES:
                raise ImportFailed(problem)
            retry_after = _retry_after(response)
        if attempt < attempts:
            time.sleep(retry_after if retry_after is not None else _backoff(attempt))
    raise ImportFailed(f"{problem} (after {attempts} attempts)")


def _backoff(attempt: int) -> float:
    base = float(getattr(settings, "PROVIDER_IMPORT_BACKOFF", 1.0))
    return random.uniform(0, min(30.0, base * 2 ** (attempt - 1)))  # full jitter


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(60.0, max(0.0, float(response.headers["retry-after"])))
    except (KeyError, ValueError):
        return None


def _json(response: httpx.Response, path: str) -> dict:
    try:
        # parse_float=Decimal: 0.06 stays 0.06, not 0.059999999999999997779…
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        raise ImportFailed(f"{path}: the answer is not JSON") from None
    if not isinstance(body, dict):
        raise ImportFailed(f"{path}: the answer is not a JSON object")
    return body


def _error_code(response: httpx.Response) -> str:
    # Only an identifier-like code: a relay's error message may echo the key.
    try:
        error = json.loads(response.content).get("error") or {}
        code = error.get("code") or error.get("type")
    except (ValueError, AttributeError):
        return ""
    return f" ({code})" if isinstance(code, str) and _SAFE_CODE.match(code) else ""


# Parsing and storing ------------------------------------------------------------------


def _results(page: dict, start: date, end: date) -> Iterator[tuple[date, dict]]:
    for bucket in page.get("data") or []:
        if not isinstance(bucket, dict):
            continue
        try:
            day = datetime.fromtimestamp(int(bucket["start_time"]), UTC).date()
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        if not start <= day <= end:
            continue
        for result in bucket.get("results") or []:
            if isinstance(result, dict):
                yield day, result


def _row(rows: dict[RowKey, dict], key: RowKey) -> dict:
    if key not in rows:
        rows[key] = {
            "requests": 0,
            "input_tokens": 0,
            "cached_input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": None,
        }
    return rows[key]


def _amount(amount: Any) -> Decimal | None:
    if not isinstance(amount, dict):
        return None
    currency = str(amount.get("currency") or "usd").lower()
    if currency != "usd":
        logger.warning("provider cost in %s skipped: keymeter counts USD", currency[:10])
        return None
    value = amount.get("value")
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(value) if isinstance(value, int | Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    try:
        return max(0, int(value))
    except (TypeError, ValueError, ArithmeticError):
        return 0


def _text(value: Any, limit: int) -> str:
    return str(value)[:limit] if value is not None else ""


def _unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _save(rows: dict[RowKey, dict]) -> None:
    projects = dict(
        Project.objects.exclude(provider_project_id="").values_list("provider_project_id", "pk")
    )
    now = timezone.now()
    objects = [
        ProviderDailyUsage(
            provider_project_id=pid,
            day=day,
            model=model,
            line_item=line_item,
            project_id=projects.get(pid),
            imported_at=now,
            **values,
        )
        for (pid, day, model, line_item), values in rows.items()
    ]
    ProviderDailyUsage.objects.bulk_create(
        objects,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["provider_project_id", "day", "model", "line_item"],
        update_fields=["project", *FIELDS, "imported_at"],
    )
