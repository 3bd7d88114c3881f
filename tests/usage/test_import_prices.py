from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent
from usage.models import ModelPrice
from usage.pricing import PriceBook, import_litellm_prices

SEPTEMBER = datetime(2025, 9, 1, tzinfo=UTC)

# Written as LiteLLM writes it: per-token floats in exponent notation.
PRICE_MAP = """{
  "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                  "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
                  "mode": "one of chat, embedding, completion, image_generation"},
  "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
             "cache_read_input_token_cost": 1.25e-06,
             "input_cost_per_token_batches": 1.25e-06, "output_cost_per_token_batches": 5e-06,
             "litellm_provider": "openai", "mode": "chat"},
  "gpt-4o-mini": {"input_cost_per_token": 1.65e-07, "output_cost_per_token": 6.6e-07,
                  "litellm_provider": "openai", "mode": "chat"},
  "acme-chat": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                "cache_read_input_token_cost": 3e-07, "litellm_provider": "acme",
                "mode": "chat"},
  "acme-reasoner": {"input_cost_per_token": 1.1e-06, "output_cost_per_token": 4.4e-06,
                    "litellm_provider": "acme", "mode": "chat"},
  "acme-whisper": {"input_cost_per_second": 0.0001, "output_cost_per_second": 0.0001,
                   "litellm_provider": "acme", "mode": "audio_transcription"},
  "acme-image": {"output_cost_per_image": 0.04, "litellm_provider": "acme",
                 "mode": "image_generation"}
}"""


@pytest.fixture
def price_file(tmp_path: Path) -> Path:
    path = tmp_path / "model_prices.json"
    path.write_text(PRICE_MAP)
    return path


def run(*args: str) -> str:
    out = StringIO()
    call_command("import_prices", *args, stdout=out)
    return out.getvalue()


def test_it_imports_exact_per_million_prices(db, price_file):
    output = run(str(price_file), "--effective-from", "2025-09-01")
    assert "4 created, 1 unchanged, 2 skipped" in output
    chat = ModelPrice.objects.get(model="acme-chat")
    assert chat.input_per_1m == Decimal("2.5")
    assert chat.output_per_1m == Decimal("10")
    assert chat.cached_input_per_1m == Decimal("0.3")
    assert chat.effective_from == SEPTEMBER
    assert chat.source == "litellm"
    # 1.1e-06 * 1e6 is 1.0999999999999999 in floats; the import must say 1.1.
    assert ModelPrice.objects.get(model="acme-reasoner").input_per_1m == Decimal("1.1")
    assert ModelPrice.objects.get(model="acme-whisper").audio_per_minute == Decimal("0.006")
    assert not ModelPrice.objects.filter(model__in=["sample_spec", "acme-image"]).exists()
    book = PriceBook.load()
    usage = {"input_tokens": 1000, "cached_input_tokens": 1000, "output_tokens": 100}
    assert book.cost("acme-chat", SEPTEMBER, **usage) == Decimal("0.0013")
    assert book.cost("acme-whisper", SEPTEMBER, audio_seconds=Decimal(30)) == Decimal("0.003")
    assert AuditEvent.objects.filter(action="price.import").count() == 1


def test_a_changed_price_starts_on_its_date_and_keeps_the_old_one(db, price_file):
    run(str(price_file), "--effective-from", "2025-09-01")
    rows = ModelPrice.objects.filter(model="gpt-4o-mini").order_by("effective_from")
    assert [r.input_per_1m for r in rows] == [Decimal("0.15"), Decimal("0.165")]
    book = PriceBook.load()
    usage = {"input_tokens": 100, "output_tokens": 300}
    assert book.cost("gpt-4o-mini", datetime(2025, 8, 31, tzinfo=UTC), **usage) == Decimal(
        "0.000195"
    )
    assert book.cost("gpt-4o-mini", SEPTEMBER, **usage) == Decimal("0.0002145")


def test_it_is_idempotent(db, price_file):
    run(str(price_file), "--effective-from", "2025-09-01")
    count = ModelPrice.objects.count()
    assert "0 created, 5 unchanged, 2 skipped" in run(
        str(price_file), "--effective-from", "2025-09-01"
    )
    assert "0 created, 5 unchanged" in run(str(price_file))
    assert ModelPrice.objects.count() == count
    assert AuditEvent.objects.filter(action="price.import").count() == 1


def test_it_takes_a_map_of_python_floats_without_float_error(db):
    data = {"acme-reasoner": {"input_cost_per_token": 1.1e-06, "output_cost_per_token": 4.4e-06}}
    counts = import_litellm_prices(data, SEPTEMBER)
    assert counts == {"created": 1, "unchanged": 0, "skipped": 0}
    row = ModelPrice.objects.get(model="acme-reasoner")
    assert (row.input_per_1m, row.output_per_1m) == (Decimal("1.1"), Decimal("4.4"))


def test_it_skips_a_price_the_table_cannot_hold_exactly(db):
    data = {
        "too-fine": {"input_cost_per_token": 1.5e-15},
        "negative": {"input_cost_per_token": -1e-06},
        "text": {"input_cost_per_token": "free"},
    }
    assert import_litellm_prices(data, SEPTEMBER)["skipped"] == 3
    assert not ModelPrice.objects.filter(source="litellm").exists()


def test_it_rejects_bad_json_with_a_clear_error(db, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"gpt-4o": {"input_cost_per_token": 2.5e-06,}')
    with pytest.raises(CommandError, match="broken.json is not valid JSON"):
        run(str(path))
    assert not ModelPrice.objects.filter(source="litellm").exists()


def test_it_rejects_json_that_is_not_a_price_map(db, tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([1, 2, 3]))
    with pytest.raises(CommandError, match="JSON object of model name"):
        run(str(path))


def test_it_rejects_a_missing_file_and_a_bad_date(db, price_file, tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        run(str(tmp_path / "nope.json"))
    with pytest.raises(CommandError, match="--effective-from must be a date"):
        run(str(price_file), "--effective-from", "1st of May")
    assert not ModelPrice.objects.filter(source="litellm").exists()
