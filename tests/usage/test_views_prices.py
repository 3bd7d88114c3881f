"""The price page (everyone reads; staff add prices with an effective date) and the
cost calculator."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from tests.conftest import make_user
from usage.models import HourlyUsage, ModelPrice


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def staff(db):
    return make_user("staff@example.org", is_staff=True)


@pytest.fixture
def mini(db):
    # The migration loads the list prices; make sure the example's price is the one in force.
    ModelPrice.objects.filter(model="gpt-4o-mini").delete()
    return ModelPrice.objects.create(
        model="gpt-4o-mini",
        effective_from=datetime(2024, 7, 18, tzinfo=UTC),
        input_per_1m=Decimal("0.15"),
        cached_input_per_1m=Decimal("0.075"),
        output_per_1m=Decimal("0.60"),
    )


NEW_PRICE = {
    "model": "gpt-9",
    "effective_from": "2026-01-01",
    "input_per_1m": "1.25",
    "cached_input_per_1m": "0.125",
    "output_per_1m": "10",
}


def test_everyone_sees_the_price_table(as_user, alpha, charlie, mini):
    html = as_user(charlie).get("/prices/").content.decode()
    assert "gpt-4o-mini" in html
    assert "<td class=\"num\">$0.15</td>" in html and "<td class=\"num\">$0.60</td>" in html
    assert "Add a price" not in html
    assert "only staff users change them" in html


def test_a_non_staff_user_cannot_add_a_price(as_user, alpha, alice):
    r = as_user(alice).post("/prices/", NEW_PRICE)
    assert r.status_code == 403
    assert not ModelPrice.objects.filter(model="gpt-9").exists()


def test_staff_add_a_price_with_an_effective_date(as_user, staff):
    r = as_user(staff).post("/prices/", NEW_PRICE)
    assert r.status_code == 302
    row = ModelPrice.objects.get(model="gpt-9")
    assert row.effective_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert row.input_per_1m == Decimal("1.25") and row.output_per_1m == Decimal("10")
    event = AuditEvent.objects.get(action="price.set")
    assert event.actor == staff and event.detail["model"] == "gpt-9"
    assert "gpt-9" in as_user(staff).get("/prices/").content.decode()


def test_a_new_price_keeps_the_old_one_in_the_history(as_user, staff, mini):
    data = NEW_PRICE | {
        "model": "gpt-4o-mini",
        "input_per_1m": "0.20",
        "effective_from": "2030-01-01",
    }
    assert as_user(staff).post("/prices/", data).status_code == 302
    assert ModelPrice.objects.filter(model="gpt-4o-mini").count() == 2
    html = as_user(staff).get("/prices/").content.decode()
    assert "From 2030-01-01 00:00 UTC, gpt-4o-mini costs" in html
    assert "2 prices" in html


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("input_per_1m", "cheap", "is not a number"),
        ("input_per_1m", "-1", "finite number"),
        ("match_pattern", "gpt-(", "Not a valid regular expression"),
        ("effective_from", "someday", "Enter a valid date"),
        ("model", "", "This field is required"),
    ],
)
def test_bad_prices_are_field_errors(as_user, staff, field, value, message):
    r = as_user(staff).post("/prices/", NEW_PRICE | {field: value})
    assert r.status_code == 400
    html = r.content.decode()
    assert f'id="price-{field}_error"' in html
    assert message in html
    assert not ModelPrice.objects.filter(model="gpt-9").exists()


def test_a_price_at_the_same_moment_is_an_error(as_user, staff):
    as_user(staff).post("/prices/", NEW_PRICE)
    r = as_user(staff).post("/prices/", NEW_PRICE)
    assert r.status_code == 400
    assert "already has a price from 2026-01-01" in r.content.decode()


def test_unpriced_models_are_listed_with_an_add_price_link(as_user, alpha, staff, charlie):
    env = alpha.environments.get(name="production")
    HourlyUsage.objects.create(
        hour=timezone.now().replace(minute=0, second=0, microsecond=0),
        project=alpha,
        environment=env,
        model="mystery-1",
        calls=1,
        unpriced_calls=1,
    )
    html = as_user(staff).get("/prices/").content.decode()
    assert "mystery-1" in html
    assert 'href="?model=mystery-1#add-price"' in html
    prefilled = as_user(staff).get("/prices/?model=mystery-1").content.decode()
    assert 'value="mystery-1"' in prefilled
    viewer = as_user(charlie).get("/prices/").content.decode()
    assert "mystery-1" in viewer and "#add-price" not in viewer


# Calculator


def test_the_calculator_reproduces_the_worked_example(as_user, alpha, charlie, mini):
    r = as_user(charlie).get(
        "/calculator/",
        {
            "model": "gpt-4o-mini",
            "requests_per_day": "1000",
            "input_tokens": "100",
            "output_tokens": "300",
        },
    )
    assert r.status_code == 200
    html = r.content.decode()
    assert '<dd id="calc-daily">$0.195</dd>' in html
    assert '<dd id="calc-monthly">$5.85</dd>' in html
    assert '<dd id="calc-request">$0.000195</dd>' in html


def test_cached_input_is_priced_at_the_cached_rate(as_user, charlie, mini):
    # 1000 × (50 × 0.15 + 50 × 0.075 + 300 × 0.60) / 1M = 0.19125
    r = as_user(charlie).get(
        "/calculator/",
        {
            "model": "gpt-4o-mini",
            "requests_per_day": "1000",
            "input_tokens": "100",
            "cached_input_tokens": "50",
            "output_tokens": "300",
        },
    )
    assert '<dd id="calc-daily">$0.19125</dd>' in r.content.decode()


def test_the_calculator_form_starts_empty_and_lists_priced_models(as_user, charlie, mini):
    r = as_user(charlie).get("/calculator/")
    assert r.status_code == 200
    html = r.content.decode()
    assert '<option value="gpt-4o-mini" selected>' in html
    assert "calc-daily" not in html


@pytest.mark.parametrize(
    "params,field",
    [
        ({"requests_per_day": "-1"}, "requests_per_day"),
        ({"input_tokens": "lots"}, "input_tokens"),
        ({"cached_input_tokens": "500"}, "cached_input_tokens"),
        ({"model": "no-such-model"}, "model"),
    ],
)
def test_the_calculator_shows_field_errors(as_user, charlie, mini, params, field):
    query = {
        "model": "gpt-4o-mini",
        "requests_per_day": "1000",
        "input_tokens": "100",
        "output_tokens": "300",
    } | params
    r = as_user(charlie).get("/calculator/", query)
    assert r.status_code == 400
    assert f'id="calc-{field}_error"' in r.content.decode()


def test_prices_and_calculator_need_a_login(client):
    assert client.get("/prices/").status_code == 302
    assert client.get("/calculator/").status_code == 302


def test_the_nav_links_to_prices_and_calculator(as_user, charlie):
    html = as_user(charlie).get("/calculator/").content.decode()
    assert 'href="/prices/"' in html
    assert 'href="/calculator/" aria-current="page"' in html
