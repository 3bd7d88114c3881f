"""Helpers for the budget and alert tests: spend real money through the real pipeline."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from accounts.models import Environment
from usage import pipeline
from usage.models import ModelPrice
from usage.records import CallRecord

# $1 per 1M input tokens: spending $X is X million input tokens, exactly.
PRICED_MODEL = "budget-test-model"


def add_test_price() -> ModelPrice:
    return ModelPrice.objects.create(
        model=PRICED_MODEL, effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        input_per_1m=Decimal("1"), output_per_1m=Decimal("1"),
    )  # fmt: skip


def spend(environment: Environment, usd: str | Decimal, at: datetime, *,
          model: str = PRICED_MODEL, **fields) -> None:  # fmt: skip
    """One call costing `usd` at time `at`, flushed into the call log and rollups."""
    tokens = Decimal(usd) * 1_000_000
    assert tokens == tokens.to_integral_value(), "spend whole millionths of a dollar"
    pipeline.enqueue(CallRecord(
        request_id=f"req_{uuid.uuid4().hex}", created_at=at.timestamp(),
        project_id=environment.project_id, environment_id=environment.pk,
        provider_key_id=None, gateway_token_id=None, endpoint="/v1/chat/completions",
        model=model, input_tokens=int(tokens), output_tokens=0,
        latency_ms=fields.pop("latency_ms", 100), **fields,
    ))  # fmt: skip
    pipeline.drain()
