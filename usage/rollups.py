"""The database half of the flush: cost the records, insert call rows, add only the new
ones into the hourly and daily rollups. Also the spend report, which reads the daily
rollups.

Raw SQL on purpose: one multi-row INSERT … ON CONFLICT (request_id) DO NOTHING
RETURNING tells exactly which rows are new (Postgres, and SQLite ≥ 3.35), and one
INSERT … ON CONFLICT … DO UPDATE per rollup table adds them, all inside the
caller's transaction.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import Sum

from accounts.models import Environment, GatewayToken, Project, ProviderKey
from usage.models import ApiCall, DailyUsage, HourlyUsage
from usage.pricing import PriceBook
from usage.records import CallRecord

log = logging.getLogger(__name__)

TEN_PLACES = Decimal("1e-10")  # money is stored exact to 1e-10 USD

CALL_COLUMNS = (
    "request_id", "created_at", "project_id", "environment_id", "provider_key_id",
    "gateway_token_id", "source", "endpoint", "model", "status_code", "stream", "batch",
    "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens",
    "audio_seconds", "cost_usd", "latency_ms", "ttfb_ms", "error_type",
)  # fmt: skip
SUM_COLUMNS = (
    "calls", "errors", "input_tokens", "cached_input_tokens", "output_tokens",
    "reasoning_tokens", "audio_seconds", "cost_usd", "unpriced_calls", "latency_ms_sum",
)  # fmt: skip
CALL_PG_TYPES = (
    "text", "timestamptz", "bigint", "bigint", "bigint", "bigint", "text", "text", "text",
    "integer", "boolean", "boolean", "bigint", "bigint", "bigint", "bigint", "numeric",
    "numeric", "integer", "integer", "text",
)  # fmt: skip
# SUM_COLUMNS, then latency_ms_max
ROLLUP_PG_TYPES = (*["bigint"] * 6, "numeric", "numeric", "bigint", "bigint", "bigint")
BUCKET_COLUMNS = ("project_id", "environment_id", "key_id", "token_id", "model")
MAX_PARAMS = 30_000  # below SQLite's 32,766 and Postgres' 65,535 bind parameters


@dataclass(slots=True)
class PricedCall:
    """A record ready for insertion: times resolved, cost computed (None = unpriced)."""

    record: CallRecord
    created_at: datetime  # aware, UTC
    hour: datetime  # start of the hour in TIME_ZONE, aware
    day: date  # calendar day in TIME_ZONE
    cost: Decimal | None
    audio: Decimal
    provider_key_id: int | None  # None when the key row is gone
    gateway_token_id: int | None


def check_database() -> None:
    if connection.vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            f"SQLite {sqlite3.sqlite_version} is too old for the usage flush "
            "(INSERT … RETURNING needs 3.35 or later)."
        )


def local_buckets(created: datetime, tz: ZoneInfo) -> tuple[datetime, date]:
    local = created.astimezone(tz)
    return local.replace(minute=0, second=0, microsecond=0), local.date()


def price_calls(records: list[CallRecord]) -> list[PricedCall]:
    """Cost each record and resolve its buckets; drop those of deleted projects/environments."""
    book = PriceBook.load()
    tz = ZoneInfo(settings.TIME_ZONE)
    env_ids = {r.environment_id for r in records}
    env_project = dict(Environment.objects.filter(id__in=env_ids).values_list("id", "project_id"))
    key_ids = {r.provider_key_id for r in records if r.provider_key_id}
    keys = set(ProviderKey.objects.filter(id__in=key_ids).values_list("id", flat=True))
    token_ids = {r.gateway_token_id for r in records if r.gateway_token_id}
    tokens = set(GatewayToken.objects.filter(id__in=token_ids).values_list("id", flat=True))
    priced = []
    for r in records:
        if env_project.get(r.environment_id) != r.project_id:
            continue  # project or environment deleted
        created = datetime.fromtimestamp(r.created_at, UTC)
        hour, day = local_buckets(created, tz)
        audio = Decimal(r.audio_seconds)
        if not (r.input_tokens or r.output_tokens or audio):
            cost: Decimal | None = Decimal(0)  # nothing billable: no price needed
        else:
            cost = book.cost(
                r.model, created, input_tokens=r.input_tokens,
                cached_input_tokens=r.cached_input_tokens, output_tokens=r.output_tokens,
                reasoning_tokens=r.reasoning_tokens, audio_seconds=audio, batch=r.batch,
            )  # fmt: skip
            if cost is not None:
                cost = cost.quantize(TEN_PLACES)
        priced.append(PricedCall(
            r, created, hour, day, cost, audio,
            r.provider_key_id if r.provider_key_id in keys else None,
            r.gateway_token_id if r.gateway_token_id in tokens else None,
        ))  # fmt: skip
    return priced


def _insert(
    table: str, columns: Sequence[str], pg_types: Sequence[str], rows: list[tuple], suffix: str
) -> list[tuple]:
    """INSERT rows (already adapted) with an ON CONFLICT … suffix; return what it returns.

    Postgres gets one array per column through unnest(): a handful of parameters
    instead of tens of thousands, which psycopg would otherwise spend most of the
    flush formatting. SQLite gets plain multi-row VALUES, in chunks.
    """
    qn = connection.ops.quote_name
    head = f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) "
    returned: list[tuple] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{t}[]" for t in pg_types)
            columns_of_values = [list(column) for column in zip(*rows, strict=True)]
            cursor.execute(f"{head}SELECT * FROM unnest({arrays}) {suffix}", columns_of_values)
            return cursor.fetchall() if "RETURNING" in suffix else []
        row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
        size = max(1, MAX_PARAMS // len(columns))
        for i in range(0, len(rows), size):
            chunk = rows[i : i + size]
            params = [value for row in chunk for value in row]
            cursor.execute(f"{head}VALUES {', '.join([row_sql] * len(chunk))} {suffix}", params)
            if "RETURNING" in suffix:
                returned += cursor.fetchall()
    return returned


def insert_calls(calls: Sequence[PricedCall]) -> set[str]:
    """Insert the calls, ignoring request ids already present; return the new ids."""
    if not calls:
        return set()
    ops = connection.ops
    qn = ops.quote_name
    rows = []
    for c in calls:
        r = c.record
        rows.append((
            r.request_id, ops.adapt_datetimefield_value(c.created_at), r.project_id,
            r.environment_id, c.provider_key_id, c.gateway_token_id, r.source,
            r.endpoint, r.model, r.status_code, r.stream, r.batch, r.input_tokens,
            r.cached_input_tokens, r.output_tokens, r.reasoning_tokens,
            ops.adapt_decimalfield_value(c.audio, 14, 3),
            ops.adapt_decimalfield_value(c.cost, 24, 10), r.latency_ms, r.ttfb_ms,
            r.error_type,
        ))  # fmt: skip
    returned = _insert(
        qn(ApiCall._meta.db_table), CALL_COLUMNS, CALL_PG_TYPES, rows,
        f"ON CONFLICT ({qn('request_id')}) DO NOTHING RETURNING {qn('request_id')}",
    )  # fmt: skip
    return {row[0] for row in returned}


def _aggregate(calls: Iterable[PricedCall], bucket: str) -> dict[tuple, list]:
    sums: dict[tuple, list] = {}
    for c in calls:
        r = c.record
        key = (
            r.project_id, r.environment_id, r.provider_key_id or 0, r.gateway_token_id or 0,
            r.model, c.hour if bucket == "hour" else c.day,
        )  # fmt: skip
        row = sums.get(key)
        if row is None:
            row = sums[key] = [0, 0, 0, 0, 0, 0, Decimal(0), Decimal(0), 0, 0, 0]
        row[0] += 1
        row[1] += r.status_code >= 400
        row[2] += r.input_tokens
        row[3] += r.cached_input_tokens
        row[4] += r.output_tokens
        row[5] += r.reasoning_tokens
        row[6] += c.audio
        if c.cost is None:
            row[8] += 1
        else:
            row[7] += c.cost
        row[9] += r.latency_ms
        row[10] = max(row[10], r.latency_ms)
    return sums


def _upsert(model: type, bucket: str, sums: dict[tuple, list]) -> None:
    ops = connection.ops
    qn = ops.quote_name
    table = qn(model._meta.db_table)
    key_columns = (*BUCKET_COLUMNS, bucket)
    all_columns = (*key_columns, *SUM_COLUMNS, "latency_ms_max")
    greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
    updates = [f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in SUM_COLUMNS]
    updates.append(
        f"{qn('latency_ms_max')} = {greatest}({table}.{qn('latency_ms_max')}, "
        f"excluded.{qn('latency_ms_max')})"
    )
    # Sorted, so concurrent flushes lock bucket rows in the same order (no deadlock).
    items = sorted(sums.items(), key=lambda kv: tuple(str(v) for v in kv[0]))
    adapt_bucket = ops.adapt_datetimefield_value if bucket == "hour" else ops.adapt_datefield_value
    rows = [
        (*key[:5], adapt_bucket(key[5]), *s[:6], ops.adapt_decimalfield_value(s[6], 18, 3),
         ops.adapt_decimalfield_value(s[7], 24, 10), *s[8:])
        for key, s in items
    ]  # fmt: skip
    bucket_type = "timestamptz" if bucket == "hour" else "date"
    pg_types = ("bigint", "bigint", "bigint", "bigint", "text", bucket_type, *ROLLUP_PG_TYPES)
    _insert(
        table, all_columns, pg_types, rows,
        f"ON CONFLICT ({', '.join(qn(c) for c in key_columns)}) "
        f"DO UPDATE SET {', '.join(updates)}",
    )  # fmt: skip


def add_to_rollups(calls: Sequence[PricedCall]) -> None:
    """Add these (newly inserted) calls into HourlyUsage and DailyUsage."""
    if calls:
        _upsert(HourlyUsage, "hour", _aggregate(calls, "hour"))
        _upsert(DailyUsage, "day", _aggregate(calls, "day"))


# Money in Redis counters (the gateway's hard limit): integer units of 1e-10 USD.


def to_units(amount: Decimal) -> int:
    return int(amount.quantize(TEN_PLACES).scaleb(10))


def from_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-10)


# Spend report (the spend API): DailyUsage only, never the call log.

GROUPS = {"day": "day", "model": "model", "environment": "environment_id", "key": "key_id"}
REPORT_FIELDS = (
    "calls", "errors", "input_tokens", "cached_input_tokens", "output_tokens",
    "reasoning_tokens", "cost_usd", "unpriced_calls",
)  # fmt: skip


def money_str(amount: Decimal | None) -> str:
    """Exact decimal string, at least cents: 0.195 → "0.195", 12.5 → "12.50"."""
    text = format((amount or Decimal(0)).quantize(TEN_PLACES), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def _report_numbers(sums: dict[str, Any]) -> dict[str, Any]:
    numbers = {f: int(sums[f"s_{f}"] or 0) for f in REPORT_FIELDS if f != "cost_usd"}
    numbers["cost_usd"] = money_str(sums["s_cost_usd"])
    return numbers


def spend_report(project: Project, start: date, end: date, group_by: str) -> dict[str, Any]:
    """Rows of calls, tokens and cost per day, model, environment or key; plus totals."""
    column = GROUPS[group_by]
    usage = DailyUsage.objects.filter(project=project, day__gte=start, day__lte=end)
    sums = {f"s_{f}": Sum(f) for f in REPORT_FIELDS}
    grouped = list(usage.values(column).annotate(**sums).order_by(column))
    if group_by != "day":
        grouped.sort(key=lambda g: -(g["s_cost_usd"] or 0))
    names: dict[Any, str] = {}
    if group_by == "environment":
        names = dict(Environment.objects.filter(project=project).values_list("id", "name"))
    elif group_by == "key":
        keys = ProviderKey.objects.filter(id__in=[g["key_id"] for g in grouped])
        names = {k.pk: f"{k.name} ({k.masked})" for k in keys}
    rows = []
    for g in grouped:
        value = g[column]
        if group_by == "day":
            label: dict[str, Any] = {"day": value.isoformat()}
        elif group_by == "model":
            label = {"model": value}
        elif group_by == "environment":
            label = {"environment": names.get(value, f"#{value}")}
        else:  # a key deleted since keeps its id; 0 means no key (ingest API)
            label = {"key_id": value, "key": names.get(value, f"#{value}" if value else None)}
        rows.append({**label, **_report_numbers(g)})
    return {
        "project": project.slug,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "group_by": group_by,
        "currency": "USD",
        "rows": rows,
        "totals": _report_numbers(usage.aggregate(**sums)),
    }
