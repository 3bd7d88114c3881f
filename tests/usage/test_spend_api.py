"""GET /api/v1/projects/{slug}/spend: the daily rollups, grouped, with exact cost strings."""

# ruff: noqa: F811  (the shared fixtures are imported from test_pipeline)

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from accounts.keys import add_provider_key
from tests.usage.test_pipeline import _spool_in_tmp, make_record, prices, production  # noqa: F401
from usage import pipeline

URL = "/api/v1/projects/alpha/spend"


def at(day: int, hour: int = 12) -> float:
    return datetime(2026, 4, day, hour, tzinfo=UTC).timestamp()


@pytest.fixture
def april(prices, production, alpha):
    """Calls on 1 and 2 April 2026 in production (two keys) and staging."""
    staging = alpha.environments.get(name="staging")
    key = add_provider_key(production, "sk-proj-" + "a" * 40 + "wxyz", name="prod key")
    records = [make_record(production, created_at=at(1), provider_key_id=key.pk)
               for _ in range(3)]  # fmt: skip
    records += [make_record(production, created_at=at(2), model="mystery-model")]
    records += [make_record(staging, created_at=at(2), status_code=429, input_tokens=0,
                            output_tokens=0, error_type="rate_limit")]  # fmt: skip
    records += [make_record(staging, created_at=at(2), input_tokens=1000, output_tokens=0,
                            cached_input_tokens=1000)]  # fmt: skip
    for record in records:
        pipeline.enqueue(record)
    pipeline.drain()
    return key


def get(client, **params):
    query = {"start": "2026-04-01", "end": "2026-04-30", **params}
    return client.get(URL, query)


def test_it_groups_by_day(april, api_as, charlie):
    response = get(api_as(charlie), group_by="day")  # a viewer may read spend

    assert response.status_code == 200
    data = response.json()
    assert (data["start"], data["end"], data["group_by"]) == ("2026-04-01", "2026-04-30", "day")
    assert [r["day"] for r in data["rows"]] == ["2026-04-01", "2026-04-02"]
    first, second = data["rows"]
    assert (first["calls"], first["cost_usd"], first["unpriced_calls"]) == (3, "0.000585", 0)
    assert (second["calls"], second["errors"], second["unpriced_calls"]) == (3, 1, 1)
    assert second["cost_usd"] == "0.000075"  # 1000 cached tokens at $0.075 / 1M
    assert second["cached_input_tokens"] == 1000
    assert data["totals"] == {
        "calls": 6, "errors": 1, "input_tokens": 1400, "cached_input_tokens": 1000,
        "output_tokens": 1200, "reasoning_tokens": 0, "cost_usd": "0.00066",
        "unpriced_calls": 1,
    }  # fmt: skip


def test_it_groups_by_model(april, api_as, bob):
    rows = get(api_as(bob), group_by="model").json()["rows"]

    assert {r["model"]: (r["calls"], r["cost_usd"], r["unpriced_calls"]) for r in rows} == {
        "gpt-4o-mini": (5, "0.00066", 0),
        "mystery-model": (1, "0.00", 1),
    }


def test_it_groups_by_environment(april, api_as, alice):
    rows = get(api_as(alice), group_by="environment").json()["rows"]

    assert {r["environment"]: (r["calls"], r["cost_usd"]) for r in rows} == {
        "production": (4, "0.000585"),
        "staging": (2, "0.000075"),
    }


def test_it_groups_by_key(april, api_as, alice):
    rows = get(api_as(alice), group_by="key").json()["rows"]

    by_key = {r["key_id"]: r for r in rows}
    assert by_key[april.pk]["key"] == "prod key (" + april.masked + ")"
    assert "a" * 20 not in str(rows)  # only the masked form of the secret
    assert (by_key[april.pk]["calls"], by_key[april.pk]["cost_usd"]) == (3, "0.000585")
    assert (by_key[0]["key"], by_key[0]["calls"]) == (None, 3)


def test_end_is_inclusive(april, api_as, alice):
    data = get(api_as(alice), start="2026-04-02", end="2026-04-02").json()

    assert [r["day"] for r in data["rows"]] == ["2026-04-02"]
    assert data["totals"]["calls"] == 3


def test_it_defaults_to_this_month_to_date(prices, production, api_as, alice):
    now = datetime.now(ZoneInfo("UTC"))
    pipeline.enqueue(make_record(production, created_at=now.timestamp()))
    if now.day > 1:  # last month does not count
        pipeline.enqueue(make_record(production, created_at=(now - timedelta(days=40)).timestamp()))
    pipeline.drain()

    data = api_as(alice).get(URL).json()

    assert data["start"] == now.date().replace(day=1).isoformat()
    assert data["end"] == now.date().isoformat()
    assert data["totals"]["calls"] == 1
    assert Decimal(data["totals"]["cost_usd"]) == Decimal("0.000195")


def test_it_sees_only_its_own_project(april, api_as, dave):
    response = get(api_as(dave))

    assert response.status_code == 404
    assert "0.000585" not in response.content.decode()


def test_it_needs_a_personal_token(april, api_as):
    assert get(api_as(None)).status_code == 401


@pytest.mark.parametrize(
    "params, message",
    [
        ({"start": "2026-13-01"}, "start must be a date"),
        ({"end": "yesterday"}, "end must be a date"),
        ({"start": "2026-04-10", "end": "2026-04-01"}, "start must not be after end"),
        ({"start": "2025-01-01", "end": "2026-04-30"}, "at most 400 days"),
        ({"group_by": "week"}, "group_by must be one of"),
    ],
)
def test_it_rejects_bad_parameters(alpha, api_as, alice, params, message):
    response = get(api_as(alice), **params)

    assert response.status_code == 400
    assert message in response.json()["detail"]
