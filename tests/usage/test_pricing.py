from __future__ import annotations

import importlib
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.test import Client

from accounts.models import AuditEvent
from usage.models import ModelPrice
from usage.pricing import PRICE_FIELDS, PriceBook, cost_for, set_price, unpriced_models

JUNE = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ONE_M = 1_000_000


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_it_costs_the_seed_example_to_the_cent(db):
    book = PriceBook.load()
    one = book.cost("gpt-4o-mini", JUNE, input_tokens=100, output_tokens=300)
    assert one == Decimal("0.000195")
    assert isinstance(one, Decimal)
    day = sum(
        (book.cost("gpt-4o-mini", JUNE, input_tokens=100, output_tokens=300) for _ in range(1000)),
        Decimal(0),
    )
    assert day == Decimal("0.195")
    assert str(day.quantize(Decimal("0.01"))) == "0.20"


def test_it_quantizes_to_ten_decimal_places(db):
    cost = cost_for("gpt-4o-mini", JUNE, input_tokens=100, output_tokens=300)
    assert cost.as_tuple().exponent == -10
    set_price("tiny", at(2025, 1, 1), by=None, audio_per_minute="0.00000001")
    # 1 s at 1e-8/min = 1.666…e-10 → 2e-10, half-even at the tenth place.
    assert cost_for("tiny", JUNE, audio_seconds=Decimal("1")) == Decimal("2E-10")


def test_it_prices_cached_tokens_at_the_cached_price(db):
    # 600 uncached × 0.15 + 400 cached × 0.075 = 90 + 30 per 1M.
    cost = cost_for("gpt-4o-mini", JUNE, input_tokens=1000, cached_input_tokens=400)
    assert cost == Decimal("0.00012")


def test_it_prices_cached_tokens_at_the_input_price_without_a_cache_discount(db):
    cost = cost_for("gpt-4-turbo", JUNE, input_tokens=1000, cached_input_tokens=400)
    assert cost == Decimal("0.01")


def test_it_does_not_count_reasoning_tokens_twice(db):
    # o3: 100 × 2.00 + 500 × 8.00 (the 400 reasoning tokens are inside the 500).
    cost = cost_for("o3", JUNE, input_tokens=100, output_tokens=500, reasoning_tokens=400)
    assert cost == Decimal("0.0042")


def test_it_bills_batch_calls_at_half_price(db):
    book = PriceBook.load()
    usage = {"input_tokens": ONE_M, "output_tokens": ONE_M}
    assert book.cost("gpt-4o", JUNE, **usage) == Decimal("12.5")
    assert book.cost("gpt-4o", JUNE, **usage, batch=True) == Decimal("6.25")
    cached = {"input_tokens": ONE_M, "cached_input_tokens": ONE_M}
    assert book.cost("gpt-4o", JUNE, **cached, batch=True) == Decimal("0.625")


def test_it_falls_back_to_half_the_list_price_when_batch_prices_are_blank(db):
    set_price("acme-chat", at(2025, 1, 1), by=None, input_per_1m="3", output_per_1m="9")
    cost = cost_for("acme-chat", JUNE, input_tokens=ONE_M, output_tokens=ONE_M, batch=True)
    assert cost == Decimal("6")


def test_it_prices_whisper_by_the_minute(db):
    assert cost_for("whisper-1", JUNE, audio_seconds=Decimal("90")) == Decimal("0.009")
    assert cost_for("whisper-1", JUNE, audio_seconds=Decimal("0.5")) == Decimal("0.00005")


def test_it_leaves_an_unknown_model_unpriced(db):
    cost = cost_for("mystery-model-9000", JUNE, input_tokens=100, output_tokens=300)
    assert cost is None


def test_it_leaves_a_call_before_the_first_price_unpriced(db):
    set_price("acme-chat", at(2025, 8, 1), by=None, input_per_1m="1", output_per_1m="2")
    assert cost_for("acme-chat", at(2025, 7, 31), input_tokens=10) is None
    assert cost_for("acme-chat", at(2025, 8, 1), input_tokens=ONE_M) == Decimal("1")
    # The default table starts on 2025-01-01.
    assert cost_for("gpt-4o-mini", at(2024, 12, 31, 23, 59), input_tokens=100) is None


def test_it_leaves_tokens_without_a_price_unpriced(db):
    book = PriceBook.load()
    assert book.cost("text-embedding-3-small", JUNE, input_tokens=1000) == Decimal("0.00002")
    assert book.cost("text-embedding-3-small", JUNE, input_tokens=10, output_tokens=5) is None
    assert book.cost("gpt-4o", JUNE, input_tokens=10, audio_seconds=Decimal(3)) is None


def test_a_zero_token_call_on_a_priced_model_costs_zero_not_unpriced(db):
    assert cost_for("gpt-4o", JUNE) == Decimal(0)


def test_it_rejects_impossible_token_counts(db):
    book = PriceBook.load()
    with pytest.raises(ValueError, match="cached_input_tokens"):
        book.cost("gpt-4o", JUNE, input_tokens=10, cached_input_tokens=11)
    with pytest.raises(ValueError, match="negative"):
        book.cost("gpt-4o", JUNE, input_tokens=-1)
    with pytest.raises(TypeError):
        book.cost("gpt-4o", JUNE, audio_seconds=1.5)


def test_a_price_change_applies_from_its_date_and_never_rewrites_the_past(alice):
    old = ModelPrice.objects.get(model="gpt-4o-mini")
    new = set_price(
        "gpt-4o-mini", at(2025, 7, 1), by=alice, input_per_1m="0.30", output_per_1m="1.20"
    )
    book = PriceBook.load()
    usage = {"input_tokens": 100, "output_tokens": 300}
    assert book.cost("gpt-4o-mini", at(2025, 6, 30, 23, 59, 59), **usage) == Decimal("0.000195")
    assert book.cost("gpt-4o-mini", at(2025, 7, 1), **usage) == Decimal("0.00039")
    assert book.price_for("gpt-4o-mini-2024-07-18", at(2025, 7, 2)) == new
    old.refresh_from_db()
    assert (old.input_per_1m, old.output_per_1m) == (Decimal("0.15"), Decimal("0.6"))
    assert ModelPrice.objects.filter(model="gpt-4o-mini").count() == 2
    event = AuditEvent.objects.get(action="price.set")
    assert event.actor == alice
    assert event.target == f"modelprice:{new.pk}"
    assert event.detail["input_per_1m"] == "0.30"
    assert new.created_by == alice


def test_it_matches_dated_snapshots_to_their_family(db):
    book = PriceBook.load()
    assert book.price_for("gpt-4o-2024-08-06", JUNE).model == "gpt-4o"
    assert book.price_for("gpt-4o-mini-2024-07-18", JUNE).model == "gpt-4o-mini"
    assert book.price_for("gpt-4.1-mini-2025-04-14", JUNE).model == "gpt-4.1-mini"
    assert book.price_for("gpt-5-nano-2025-08-07", JUNE).model == "gpt-5-nano"
    assert book.price_for("gpt-3.5-turbo-0125", JUNE).model == "gpt-3.5-turbo"
    assert book.price_for("openai/gpt-4o", JUNE).model == "gpt-4o"
    assert book.price_for("openai/gpt-4o-mini-2024-07-18", JUNE).model == "gpt-4o-mini"
    assert book.price_for("gpt-4o-realtime-preview", JUNE) is None
    assert book.price_for("gpt-4o-2024-13-45x", JUNE) is None
    cost = book.cost("gpt-4o-mini-2024-07-18", JUNE, input_tokens=100, output_tokens=300)
    assert cost == Decimal("0.000195")


def test_it_matches_mmdd_snapshots_of_a_listed_family(db):
    set_price("gpt-4", at(2025, 1, 1), by=None, input_per_1m="30", output_per_1m="60")
    book = PriceBook.load()
    assert book.price_for("gpt-4-0613", JUNE).model == "gpt-4"
    assert book.price_for("gpt-4-turbo-2024-04-09", JUNE).model == "gpt-4-turbo"
    assert book.price_for("gpt-4o", JUNE).model == "gpt-4o"


def test_an_exact_row_for_a_snapshot_wins_over_its_family(db):
    set_price("gpt-4o-2024-05-13", at(2025, 1, 1), by=None, input_per_1m="5", output_per_1m="15")
    book = PriceBook.load()
    assert book.price_for("gpt-4o-2024-05-13", JUNE).model == "gpt-4o-2024-05-13"
    assert book.price_for("gpt-4o-2024-08-06", JUNE).model == "gpt-4o"
    assert book.cost("gpt-4o-2024-05-13", JUNE, input_tokens=ONE_M) == Decimal("5")


def test_a_match_pattern_prices_names_the_default_rule_does_not(db):
    set_price(
        "claude-sonnet-4",
        at(2025, 1, 1),
        by=None,
        match_pattern=r"(anthropic/)?claude-sonnet-4(-\d{8})?",
        input_per_1m="3",
        output_per_1m="15",
    )
    book = PriceBook.load()
    assert book.price_for("claude-sonnet-4-20250514", JUNE).model == "claude-sonnet-4"
    assert book.price_for("claude-sonnet-4-5", JUNE) is None
    # A later price for the family keeps its pattern.
    set_price("claude-sonnet-4", at(2025, 9, 1), by=None, input_per_1m="2", output_per_1m="10")
    later = PriceBook.load().price_for("claude-sonnet-4-20250514", at(2025, 9, 2))
    assert later.input_per_1m == Decimal("2")


def test_it_costs_ten_thousand_calls_with_one_query(db, django_assert_max_num_queries):
    models = ["gpt-4o-mini", "gpt-4o-2024-08-06", "o3", "unknown-model", "openai/gpt-5"]
    with django_assert_max_num_queries(1):
        book = PriceBook.load()
        costs = [
            book.cost(models[i % 5], JUNE, input_tokens=100 + i % 7, output_tokens=300)
            for i in range(10_000)
        ]
    assert costs.count(None) == 2_000
    assert costs[0] == Decimal("0.000195")


def test_set_price_rejects_bad_input(db):
    with pytest.raises(ValidationError, match="not floats"):
        set_price("x", JUNE, by=None, input_per_1m=0.15)
    with pytest.raises(ValidationError, match="regular expression"):
        set_price("x", JUNE, by=None, match_pattern="gpt-(", input_per_1m="1")
    with pytest.raises(ValidationError, match="at least one price"):
        set_price("x", JUNE, by=None)
    with pytest.raises(ValidationError):
        set_price("x", JUNE, by=None, input_per_1m="0.000000001")  # 9 decimal places
    with pytest.raises(ValidationError, match="≥ 0"):
        set_price("x", JUNE, by=None, input_per_1m="-1")
    with pytest.raises(ValidationError, match="already has a price"):
        set_price("gpt-4o", at(2025, 1, 1), by=None, input_per_1m="9")
    assert not ModelPrice.objects.filter(model="x").exists()
    assert ModelPrice.objects.get(model="gpt-4o").input_per_1m == Decimal("2.5")


def test_the_default_price_migration_loads_list_prices_and_reverses(db):
    migration = importlib.import_module("usage.migrations.0002_default_prices")
    rows = ModelPrice.objects.filter(source="openai-list-2025")
    assert rows.count() == 15
    mini = rows.get(model="gpt-4o-mini")
    assert (mini.input_per_1m, mini.cached_input_per_1m, mini.output_per_1m) == (
        Decimal("0.15"),
        Decimal("0.075"),
        Decimal("0.6"),
    )
    assert (mini.batch_input_per_1m, mini.batch_output_per_1m) == (Decimal("0.075"), Decimal("0.3"))
    assert mini.effective_from == at(2025, 1, 1)
    assert rows.get(model="whisper-1").audio_per_minute == Decimal("0.006")
    migration.remove_prices(apps, None)
    assert not ModelPrice.objects.filter(source="openai-list-2025").exists()
    migration.add_prices(apps, None)
    assert rows.count() == 15


def test_unpriced_models_lists_models_logged_without_a_price(alpha):
    from usage.models import HourlyUsage

    environment = alpha.environments.get(name="production")
    common = {"project": alpha, "environment": environment, "calls": 1}
    HourlyUsage.objects.create(hour=JUNE, model="mystery", unpriced_calls=1, **common)
    HourlyUsage.objects.create(hour=JUNE, model="gpt-4o", cost_usd=Decimal("0.01"), **common)
    HourlyUsage.objects.create(hour=at(2025, 5, 1), model="older", unpriced_calls=1, **common)
    assert unpriced_models(at(2025, 6, 1)) == ["mystery"]
    assert unpriced_models(at(2025, 6, 1), project_ids=[alpha.pk + 1]) == []


@pytest.fixture
def admin_client_of(alice, settings):
    # Without DEBUG the manifest storage wants `collectstatic`; the admin pages need none.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client = Client()
    client.force_login(alice)
    return client


def admin_form(**values: str) -> dict[str, str]:
    form = {
        "model": "acme-chat",
        "match_pattern": "",
        "effective_from_0": "2025-08-01",
        "effective_from_1": "00:00:00",
    }
    form.update({field: "" for field in PRICE_FIELDS})
    form.update(values)
    return form


def test_the_admin_adds_a_price_through_set_price(admin_client_of, alice):
    url = "/admin/usage/modelprice/add/"
    response = admin_client_of.post(url, admin_form(input_per_1m="3", output_per_1m="9"))
    assert response.status_code == 302
    row = ModelPrice.objects.get(model="acme-chat")
    assert (row.input_per_1m, row.created_by) == (Decimal("3"), alice)
    assert AuditEvent.objects.get(action="price.set").actor == alice
    # Existing rows are view-only: the change form does not save.
    old = ModelPrice.objects.get(model="gpt-4o")
    change = f"/admin/usage/modelprice/{old.pk}/change/"
    admin_client_of.post(change, admin_form(model="gpt-4o", input_per_1m="99"))
    old.refresh_from_db()
    assert old.input_per_1m == Decimal("2.5")


def test_the_admin_shows_field_errors_instead_of_failing(admin_client_of):
    url = "/admin/usage/modelprice/add/"
    response = admin_client_of.post(url, admin_form(match_pattern="gpt-(", input_per_1m="-1"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "regular expression" in str(errors["match_pattern"])
    assert "≥ 0" in str(errors["input_per_1m"])
    response = admin_client_of.post(url, admin_form())
    assert "at least one price" in response.content.decode()
    assert not ModelPrice.objects.filter(model="acme-chat").exists()


def test_the_longest_matching_family_wins(db):
    # A broad pattern on gpt-4o must not swallow gpt-4o-mini's snapshots.
    set_price("gpt-4o", at(2025, 2, 1), by=None, match_pattern=r"gpt-4o(-.+)?", input_per_1m="3")
    book = PriceBook.load()
    assert book.price_for("gpt-4o-mini-2024-07-18", JUNE).model == "gpt-4o-mini"
    assert book.price_for("gpt-4o-search-preview", JUNE).model == "gpt-4o"
    assert book.price_for("gpt-4o-search-preview", at(2025, 1, 15)) is None
