"""GET/PUT /api/v1/prices: everyone reads the table, staff change it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.models import AuditEvent
from tests.conftest import make_user
from usage.models import ModelPrice
from usage.pricing import cost_for


@pytest.fixture
def staff(db):
    return make_user("staff@example.org", is_staff=True)


ENTRY = {
    "model": "gpt-9",
    "effective_from": "2026-01-01",
    "input_per_1m": "1.25",
    "cached_input_per_1m": "0.125",
    "output_per_1m": "10.00000001",
}


def _by_model(rows):
    return {r["model"]: r for r in rows}


def test_anyone_with_a_token_lists_the_current_prices(api_as, alpha, charlie):
    ModelPrice.objects.create(
        model="gpt-x",
        effective_from=datetime(2024, 1, 1, tzinfo=UTC),
        input_per_1m=Decimal("5"),
        output_per_1m=Decimal("15"),
    )
    ModelPrice.objects.create(
        model="gpt-x",
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
        input_per_1m=Decimal("2.5"),
        output_per_1m=Decimal("10"),
    )
    ModelPrice.objects.create(
        model="gpt-x",
        effective_from=datetime(2099, 1, 1, tzinfo=UTC),
        input_per_1m=Decimal("1"),
        output_per_1m=Decimal("1"),
    )
    r = api_as(charlie).get("/api/v1/prices")
    assert r.status_code == 200
    row = _by_model(r.json())["gpt-x"]
    assert row["input_per_1m"] == "2.5" and row["output_per_1m"] == "10"
    assert row["cached_input_per_1m"] is None
    assert row["effective_from"].startswith("2025-01-01")
    history = api_as(charlie).get("/api/v1/prices?history=true").json()
    assert [r["input_per_1m"] for r in history if r["model"] == "gpt-x"] == ["5", "2.5", "1"]


def test_without_a_token_it_is_401(client, db):
    assert client.get("/api/v1/prices").status_code == 401


@pytest.mark.parametrize("who", ["alice", "bob", "charlie"])
def test_only_staff_change_prices(api_as, alpha, who, request):
    r = api_as(request.getfixturevalue(who)).put("/api/v1/prices", [ENTRY])
    assert r.status_code == 403
    assert "only staff" in r.json()["detail"]
    assert not ModelPrice.objects.filter(model="gpt-9").exists()


def test_staff_put_prices_and_they_round_trip_exactly(api_as, staff):
    r = api_as(staff).put(
        "/api/v1/prices", [ENTRY, {"model": "whisper-9", "audio_per_minute": "0.006"}]
    )
    assert r.status_code == 200, r.content
    out = _by_model(r.json())
    assert out["gpt-9"]["output_per_1m"] == "10.00000001"
    assert out["gpt-9"]["effective_from"].startswith("2026-01-01T00:00:00")
    assert out["whisper-9"]["audio_per_minute"] == "0.006"
    row = ModelPrice.objects.get(model="gpt-9")
    assert row.output_per_1m == Decimal("10.00000001") and row.source == "api"
    listed = _by_model(api_as(staff).get("/api/v1/prices").json())["gpt-9"]
    assert {k: listed[k] for k in ("input_per_1m", "cached_input_per_1m", "output_per_1m")} == {
        "input_per_1m": "1.25",
        "cached_input_per_1m": "0.125",
        "output_per_1m": "10.00000001",
    }
    assert AuditEvent.objects.filter(action="price.set", actor=staff).count() == 2
    # And the new price is what calls are costed at: 1M input tokens at $1.25.
    assert cost_for("gpt-9", datetime(2026, 2, 1, tzinfo=UTC), input_tokens=1_000_000) == Decimal(
        "1.25"
    )


@pytest.mark.parametrize(
    "entry,status,text",
    [
        (ENTRY | {"input_per_1m": "abc"}, 400, "is not a number"),
        (ENTRY | {"input_per_1m": "-1"}, 400, "finite number"),
        (ENTRY | {"input_per_1m": 0.15}, 422, "string"),
        (ENTRY | {"effective_from": "next week"}, 400, "effective_from must be a date"),
        (ENTRY | {"match_pattern": "gpt-("}, 400, "Not a valid regular expression"),
        ({"model": "gpt-9"}, 400, "at least one price"),
        ({"input_per_1m": "1"}, 422, "model"),
        (ENTRY | {"surprise": "1"}, 200, ""),  # unknown keys are ignored, like the other endpoints
    ],
)
def test_bad_input_is_a_clear_4xx(api_as, staff, entry, status, text):
    r = api_as(staff).put("/api/v1/prices", [entry])
    assert r.status_code == status, r.content
    assert text in r.content.decode()


def test_one_bad_entry_rejects_the_whole_list(api_as, staff):
    r = api_as(staff).put(
        "/api/v1/prices", [ENTRY, ENTRY | {"model": "gpt-10", "output_per_1m": "x"}]
    )
    assert r.status_code == 400
    assert "Entry 1 (gpt-10)" in r.json()["detail"]
    assert not ModelPrice.objects.filter(model__in=["gpt-9", "gpt-10"]).exists()
    assert not AuditEvent.objects.filter(action="price.set").exists()


def test_a_duplicate_effective_date_is_400(api_as, staff):
    assert api_as(staff).put("/api/v1/prices", [ENTRY]).status_code == 200
    r = api_as(staff).put("/api/v1/prices", [ENTRY])
    assert r.status_code == 400
    assert "already has a price" in r.json()["detail"]


def test_an_empty_list_is_400(api_as, staff):
    assert api_as(staff).put("/api/v1/prices", []).status_code == 400
