"""Rollup arithmetic across flushes, and the live spend counter the hard limit reads."""

# ruff: noqa: F811  (the shared fixtures are imported from test_pipeline)

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from dashboard.redis_client import get_redis
from tests.usage.test_pipeline import _spool_in_tmp, make_record, prices, production  # noqa: F401
from usage import hardlimit, pipeline, rollups
from usage.models import ApiCall, DailyUsage, HourlyUsage

APRIL = datetime(2026, 4, 15, 12, 0, tzinfo=UTC)


def flush(*records) -> None:
    for record in records:
        pipeline.enqueue(record)
    pipeline.drain()


def test_later_flushes_add_into_the_same_bucket(prices, production):
    flush(make_record(production, latency_ms=50), make_record(production, latency_ms=400))
    flush(make_record(production, latency_ms=200, output_tokens=0))

    day = DailyUsage.objects.get()
    assert (day.calls, day.input_tokens, day.output_tokens) == (3, 300, 600)
    assert (day.latency_ms_sum, day.latency_ms_max) == (650, 400)
    # 2 × 0.000195 + 100 × 0.15 / 1M
    assert day.cost_usd == Decimal("0.000405")
    assert HourlyUsage.objects.get().calls == 3


def test_rollups_equal_the_sum_of_the_call_log(prices, production, alpha):
    staging = alpha.environments.get(name="staging")
    records = [
        make_record(env, model=model, input_tokens=n, cached_input_tokens=n // 3,
                    output_tokens=2 * n, created_at=APRIL.timestamp() + 3600 * n)
        for n in range(1, 40)
        for env in (production, staging)
        for model in ("gpt-4o-mini", "mystery-model")
    ]  # fmt: skip
    flush(*records[:50])
    flush(*records)  # the first 50 again: duplicates

    calls = ApiCall.objects.all()
    assert calls.count() == len(records) == sum(d.calls for d in DailyUsage.objects.all())
    assert sum(h.calls for h in HourlyUsage.objects.all()) == len(records)
    priced = sum(c.cost_usd for c in calls if c.cost_usd is not None)
    assert sum(d.cost_usd for d in DailyUsage.objects.all()) == priced
    assert sum(d.unpriced_calls for d in DailyUsage.objects.all()) == len(records) // 2
    assert sum(d.cached_input_tokens for d in DailyUsage.objects.all()) == sum(
        c.cached_input_tokens for c in calls
    )


def test_the_live_spend_counter_starts_from_the_rollups_and_follows_ingest(prices, production):
    project_id = production.project_id
    now = datetime.now(UTC)
    flush(*[make_record(production, created_at=now.timestamp()) for _ in range(10)])

    # What the gateway builds a missing counter from: the month so far in the rollups.
    assert hardlimit.spend_units(project_id, now.timestamp()) == 19_500_000  # 1e-10 USD
    key = hardlimit.live_key(project_id, hardlimit.month_of(now.timestamp()))
    get_redis().set(key, 19_500_000)

    # Calls that did not pass the gateway are added by the flush once stored.
    flush(*[make_record(production, created_at=now.timestamp(), source="ingest")
            for _ in range(5)])  # fmt: skip
    assert get_redis().get(key) == b"29250000"
    assert hardlimit.spend_units(project_id, now.timestamp()) == 29_250_000


def test_a_flush_does_not_create_a_missing_counter_with_a_partial_sum(prices, production):
    now = datetime.now(UTC)
    flush(make_record(production, created_at=now.timestamp(), source="ingest"))
    key = hardlimit.live_key(production.project_id, hardlimit.month_of(now.timestamp()))
    assert get_redis().get(key) is None  # nobody asked yet: nothing to keep up to date
    assert hardlimit.spend_units(production.project_id, now.timestamp()) == 1_950_000


def test_the_live_spend_counter_follows_the_time_zone_months(prices, production, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    # 20:00 UTC on 30 April is already May in Shanghai.
    call_time = datetime(2026, 4, 30, 20, tzinfo=UTC).timestamp()
    project_id = production.project_id
    may = hardlimit.live_key(project_id, "2026-05")
    get_redis().set(may, 0)
    flush(make_record(production, created_at=call_time, source="ingest"))

    assert hardlimit.month_of(call_time) == "2026-05"
    assert get_redis().get(may) == b"1950000"
    assert (
        hardlimit.spend_units(project_id, datetime(2026, 4, 30, 15, tzinfo=UTC).timestamp()) == 0
    )
    assert (
        hardlimit.spend_units(project_id, datetime(2026, 5, 2, tzinfo=UTC).timestamp())
        == 1_950_000
    )


def test_money_strings_are_exact_with_at_least_cents():
    assert rollups.money_str(Decimal("0.1950000000")) == "0.195"
    assert rollups.money_str(Decimal("12.5")) == "12.50"
    assert rollups.money_str(Decimal(0)) == "0.00"
    assert rollups.money_str(None) == "0.00"
    assert rollups.money_str(Decimal("1234567.0000000001")) == "1234567.0000000001"
