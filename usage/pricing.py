"""Exact pricing: which ModelPrice row prices a call, and what the call costs.

Everything here is Decimal: a price is per 1M tokens (audio per minute), a cost is USD
quantized to 1e-10. A model without a price in force is *unpriced* (None), never $0.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any, cast

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from accounts import audit
from accounts.models import User
from usage.models import ModelPrice

log = logging.getLogger(__name__)

COST_QUANTUM = Decimal("1E-10")
PRICE_QUANTUM = Decimal("1E-8")  # ModelPrice columns hold 8 decimal places
ONE_MILLION = Decimal(1_000_000)
SIXTY = Decimal(60)
TWO = Decimal(2)

PRICE_FIELDS = (
    "input_per_1m",
    "cached_input_per_1m",
    "output_per_1m",
    "batch_input_per_1m",
    "batch_output_per_1m",
    "audio_per_minute",
)

# Dated snapshots bill as their family: gpt-4o-2024-08-06 and gpt-4-0613 (MMDD).
SNAPSHOT_SUFFIX = r"-(?:\d{4}-\d{2}-\d{2}|(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))"


def normalize_model(model: str) -> str:
    return (model or "").strip().lower()


def strip_provider(model: str) -> str:
    """`openai/gpt-4o` → `gpt-4o`; relays prefix the provider's name."""
    return model.rsplit("/", 1)[-1]


def as_aware(at: datetime) -> datetime:
    return timezone.make_aware(at) if timezone.is_naive(at) else at


class PriceBook:
    """All price rows, read once; resolving and costing after that runs no queries.

    Load one per batch of calls (a flush, an import, a report) rather than per call.
    """

    def __init__(self, rows: Iterable[ModelPrice]) -> None:
        by_model: dict[str, list[ModelPrice]] = defaultdict(list)
        for row in rows:
            by_model[normalize_model(row.model)].append(row)
        for family_rows in by_model.values():
            family_rows.sort(key=lambda r: r.effective_from)
        self._rows = dict(by_model)
        self._starts = {name: [r.effective_from for r in rs] for name, rs in self._rows.items()}
        # Between two consecutive effective_from values the set of rows in force is
        # fixed, so a resolution is memoized per (model, that interval).
        self._boundaries = sorted({r.effective_from for rs in self._rows.values() for r in rs})
        self._memo: dict[tuple[str, int], ModelPrice | None] = {}
        self._patterns: dict[int, re.Pattern[str] | None] = {}

    @classmethod
    def load(cls) -> PriceBook:
        return cls(ModelPrice.objects.all())

    def _in_force(self, family: str, at: datetime) -> ModelPrice | None:
        i = bisect_right(self._starts[family], at)
        return self._rows[family][i - 1] if i else None

    def exact_price(self, model: str, at: datetime) -> ModelPrice | None:
        """The row in force for exactly this name (no snapshot or prefix matching)."""
        family = normalize_model(model)
        return self._in_force(family, as_aware(at)) if family in self._rows else None

    def _pattern(self, family: str, row: ModelPrice) -> re.Pattern[str] | None:
        key = id(row)
        if key not in self._patterns:
            source = row.match_pattern.strip() or re.escape(family) + SNAPSHOT_SUFFIX
            try:
                self._patterns[key] = re.compile(source, re.IGNORECASE)
            except re.error:
                log.warning("Ignoring invalid match_pattern %r of %s", row.match_pattern, row)
                self._patterns[key] = None
        return self._patterns[key]

    def price_for(self, model: str, at: datetime) -> ModelPrice | None:
        """The row in force at `at`: exact name first, else the longest matching family."""
        at = as_aware(at)
        key = (model, bisect_right(self._boundaries, at))
        if key not in self._memo:
            self._memo[key] = self._resolve(model, at)
        return self._memo[key]

    def _resolve(self, model: str, at: datetime) -> ModelPrice | None:
        name = normalize_model(model)
        bare = strip_provider(name)
        for candidate in dict.fromkeys((name, bare)):
            if candidate in self._rows and (row := self._in_force(candidate, at)):
                return row
        best: tuple[int, ModelPrice] | None = None
        for family in self._rows:
            row = self._in_force(family, at)
            if row is None or (best is not None and len(family) <= best[0]):
                continue
            pattern = self._pattern(family, row)
            if pattern and (pattern.fullmatch(name) or pattern.fullmatch(bare)):
                best = (len(family), row)
        return best[1] if best else None

    def cost(
        self,
        model: str,
        at: datetime,
        *,
        input_tokens: int = 0,
        cached_input_tokens: int = 0,
        output_tokens: int = 0,
        reasoning_tokens: int = 0,
        audio_seconds: Decimal = Decimal(0),
        batch: bool = False,
    ) -> Decimal | None:
        """USD for one call, or None when the call is unpriced.

        `input_tokens` includes the cached ones and `output_tokens` includes the reasoning
        ones, as in OpenAI's usage object; reasoning tokens are therefore not added again.
        """
        if min(input_tokens, cached_input_tokens, output_tokens, reasoning_tokens) < 0:
            raise ValueError("token counts cannot be negative")
        if cached_input_tokens > input_tokens:
            raise ValueError("cached_input_tokens cannot exceed input_tokens (it is part of it)")
        if isinstance(audio_seconds, float):
            raise TypeError("audio_seconds must be a Decimal, not a float")
        row = self.price_for(model, at)
        if row is None:
            return None
        return price_call(
            row,
            input_tokens=input_tokens,
            cached_input_tokens=cached_input_tokens,
            output_tokens=output_tokens,
            audio_seconds=Decimal(audio_seconds),
            batch=batch,
        )


def _rates(row: ModelPrice, batch: bool) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """(input, cached input, output) per 1M, list or batch."""
    listed_cached = row.cached_input_per_1m
    if listed_cached is None:
        listed_cached = row.input_per_1m  # no cache discount for this model
    if not batch:
        return row.input_per_1m, listed_cached, row.output_per_1m

    def half(value: Decimal | None) -> Decimal | None:
        return None if value is None else value / TWO

    batch_input = row.batch_input_per_1m
    if batch_input is None:
        batch_input = half(row.input_per_1m)
    batch_output = row.batch_output_per_1m
    if batch_output is None:
        batch_output = half(row.output_per_1m)
    # There is no batch cached column: batch discounts the cached price by half too.
    batch_cached: Decimal | None = batch_input
    if row.cached_input_per_1m is not None:
        batch_cached = half(row.cached_input_per_1m)
    return batch_input, batch_cached, batch_output


def price_call(
    row: ModelPrice,
    *,
    input_tokens: int,
    cached_input_tokens: int,
    output_tokens: int,
    audio_seconds: Decimal,
    batch: bool,
) -> Decimal | None:
    input_rate, cached_rate, output_rate = _rates(row, batch)
    parts: list[tuple[int | Decimal, Decimal | None]] = [
        (input_tokens - cached_input_tokens, input_rate),
        (cached_input_tokens, cached_rate),
        (output_tokens, output_rate),
    ]
    with localcontext(prec=60, rounding=ROUND_HALF_EVEN):
        tokens_usd = Decimal(0)
        for count, rate in parts:
            if count:
                if rate is None:
                    return None  # tokens of a kind this model has no price for
                tokens_usd += count * rate
        total = tokens_usd / ONE_MILLION
        if audio_seconds:
            if row.audio_per_minute is None:
                return None
            total += audio_seconds * row.audio_per_minute / SIXTY
        return total.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def cost_for(model: str, at: datetime, **usage: Any) -> Decimal | None:
    """One-off costing. For many calls load one PriceBook and call book.cost()."""
    return PriceBook.load().cost(model, at, **usage)


def unpriced_models(since: datetime, project_ids=None) -> list[str]:
    """Models of calls since `since` that were logged without a price.

    Reads the hourly rollups, not the call log, so it costs the same at any call volume.
    """
    from usage.models import HourlyUsage

    rows = HourlyUsage.objects.filter(hour__gte=since, unpriced_calls__gt=0).exclude(model="")
    if project_ids is not None:
        rows = rows.filter(project_id__in=project_ids)
    return sorted(set(rows.values_list("model", flat=True).distinct()))


def to_datetime(value: datetime | date | None) -> datetime:
    """A date means its midnight UTC; None means now."""
    if value is None:
        return timezone.now()
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=UTC)
    return as_aware(value)


def clean_price(field: str, value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, float | bool):
        raise ValidationError({field: "Give prices as strings or Decimals, not floats."})
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValidationError({field: f"{value!r} is not a number."}) from None
    if not number.is_finite() or number < 0:
        raise ValidationError({field: "A price must be a finite number ≥ 0."})
    column = cast(models.DecimalField, ModelPrice._meta.get_field(field))
    column.run_validators(number)  # digits and decimal places
    return number


def clean_pattern(pattern: str) -> str:
    pattern = (pattern or "").strip()
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValidationError(
                {"match_pattern": f"Not a valid regular expression: {exc}"}
            ) from None
    return pattern


@transaction.atomic
def set_price(
    model: str,
    effective_from: datetime | date | None,
    *,
    by: User | None,
    match_pattern: str | None = None,
    source: str = "admin",
    ip: str | None = None,
    **prices: Any,
) -> ModelPrice:
    """Add a price for `model` from `effective_from` on. Earlier rows stay as they are,
    so calls made before keep the price they were made at."""
    model = (model or "").strip()
    if not model or len(model) > 100:
        raise ValidationError({"model": "Give a model name of 1 to 100 characters."})
    unknown = set(prices) - set(PRICE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown price fields: {', '.join(sorted(unknown))}.")
    values = {field: clean_price(field, prices.get(field)) for field in PRICE_FIELDS}
    if all(v is None for v in values.values()):
        raise ValidationError("Give at least one price.")
    start = to_datetime(effective_from)
    if match_pattern is None:
        # A price change keeps the snapshot pattern of the price it replaces.
        previous = (
            ModelPrice.objects.filter(model=model, effective_from__lte=start)
            .order_by("-effective_from")
            .first()
        )
        match_pattern = previous.match_pattern if previous else ""
    row = ModelPrice(
        model=model,
        match_pattern=clean_pattern(match_pattern),
        effective_from=start,
        source=source[:50],
        created_by=by if by is not None and by.is_authenticated else None,
        **values,
    )
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        raise ValidationError(
            {"effective_from": f"{model} already has a price from {start:%Y-%m-%d %H:%M}."}
        ) from None
    audit.record(
        "price.set",
        actor=by,
        target=row,
        ip=ip,
        model=model,
        effective_from=start.isoformat(),
        match_pattern=row.match_pattern,
        **{f: str(v) for f, v in values.items() if v is not None},  # type: ignore[arg-type]
    )
    return row


# LiteLLM's per-token (or per-second) keys → our per-1M (or per-minute) columns.
LITELLM_FIELDS = {
    "input_cost_per_token": ("input_per_1m", ONE_MILLION),
    "cache_read_input_token_cost": ("cached_input_per_1m", ONE_MILLION),
    "output_cost_per_token": ("output_per_1m", ONE_MILLION),
    "input_cost_per_token_batches": ("batch_input_per_1m", ONE_MILLION),
    "output_cost_per_token_batches": ("batch_output_per_1m", ONE_MILLION),
    "input_cost_per_audio_per_second": ("audio_per_minute", SIXTY),
}
# Plain per-second pricing means audio only for transcription models.
AUDIO_MODES = {"audio_transcription", None}


def exact_decimal(value: Any) -> Decimal | None:
    """A JSON number as the exact decimal it was written as (repr, never binary float)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def litellm_prices(entry: dict[str, Any]) -> dict[str, Decimal] | None:
    """Our price columns for one LiteLLM entry, or None when it has no usable price."""
    found: dict[str, Decimal] = {}
    keys = dict(LITELLM_FIELDS)
    if entry.get("mode") in AUDIO_MODES and "input_cost_per_audio_per_second" not in entry:
        keys["input_cost_per_second"] = ("audio_per_minute", SIXTY)
    for key, (field, factor) in keys.items():
        if key not in entry:
            continue
        number = exact_decimal(entry[key])
        if number is None:
            return None
        with localcontext(prec=60):
            exact = number * factor
            scaled = exact.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)
        # Skip rather than round: a price the column cannot hold exactly would be wrong.
        if scaled != exact or scaled.adjusted() >= 8:
            return None
        found[field] = scaled
    return found or None


def import_litellm_prices(
    data: dict[str, Any],
    effective_from: datetime | date | None = None,
    *,
    by: User | None = None,
) -> dict[str, int]:
    """Add a price row for each model whose LiteLLM price differs from the one in force.

    Re-importing the same map adds nothing. Returns counts: created, unchanged, skipped.
    """
    if not isinstance(data, dict):
        raise ValueError("A LiteLLM price map is a JSON object of model name → prices.")
    start = to_datetime(effective_from)
    book = PriceBook.load()
    counts = {"created": 0, "unchanged": 0, "skipped": 0}
    new_rows: list[ModelPrice] = []
    for name, entry in data.items():
        model = str(name).strip()
        prices = litellm_prices(entry) if isinstance(entry, dict) else None
        if model == "sample_spec" or not model or len(model) > 100 or prices is None:
            counts["skipped"] += 1
            continue
        current = book.exact_price(model, start)
        wanted = {f: prices.get(f) for f in PRICE_FIELDS}
        if current is not None and all(getattr(current, f) == v for f, v in wanted.items()):
            counts["unchanged"] += 1
        elif current is not None and current.effective_from == start:
            counts["skipped"] += 1  # a different price already starts at this very moment
        else:
            new_rows.append(
                ModelPrice(
                    model=model,
                    match_pattern=current.match_pattern if current else "",
                    effective_from=start,
                    source="litellm",
                    created_by=by,
                    **wanted,
                )
            )
    with transaction.atomic():
        ModelPrice.objects.bulk_create(new_rows, batch_size=500)
        counts["created"] = len(new_rows)
        if new_rows:
            detail: dict[str, Any] = {"effective_from": start.isoformat(), **counts}
            audit.record("price.import", actor=by, **detail)
    return counts
