"""The provider's public list prices (2025) as the default price table.

Batch prices are half the list price. Admins add later rows to change a price; this
migration's rows are the ones with source "openai-list-2025".
"""

import datetime
from decimal import Decimal

from django.db import migrations

SOURCE = "openai-list-2025"
EFFECTIVE_FROM = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)

# model: (input, cached input, output) per 1M tokens, USD; None where not sold.
TOKEN_PRICES = {
    "gpt-5": ("1.25", "0.125", "10.00"),
    "gpt-5-mini": ("0.25", "0.025", "2.00"),
    "gpt-5-nano": ("0.05", "0.005", "0.40"),
    "gpt-4.1": ("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.025", "0.40"),
    "gpt-4o": ("2.50", "1.25", "10.00"),
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "o3": ("2.00", "0.50", "8.00"),
    "o4-mini": ("1.10", "0.275", "4.40"),
    "gpt-4-turbo": ("10.00", None, "30.00"),
    "gpt-3.5-turbo": ("0.50", None, "1.50"),
    "text-embedding-3-small": ("0.02", None, None),
    "text-embedding-3-large": ("0.13", None, None),
}
AUDIO_PER_MINUTE = {"whisper-1": "0.006"}


def dec(value):
    return None if value is None else Decimal(value)


def half(value):
    return None if value is None else Decimal(value) / 2


def add_prices(apps, schema_editor):
    ModelPrice = apps.get_model("usage", "ModelPrice")
    rows = [
        ModelPrice(
            model=model,
            effective_from=EFFECTIVE_FROM,
            input_per_1m=dec(inp),
            cached_input_per_1m=dec(cached),
            output_per_1m=dec(out),
            batch_input_per_1m=half(inp),
            batch_output_per_1m=half(out),
            source=SOURCE,
        )
        for model, (inp, cached, out) in TOKEN_PRICES.items()
    ]
    rows += [
        ModelPrice(
            model=model,
            effective_from=EFFECTIVE_FROM,
            audio_per_minute=Decimal(per_minute),
            source=SOURCE,
        )
        for model, per_minute in AUDIO_PER_MINUTE.items()
    ]
    existing = set(
        ModelPrice.objects.filter(effective_from=EFFECTIVE_FROM).values_list("model", flat=True)
    )
    ModelPrice.objects.bulk_create([r for r in rows if r.model not in existing])


def remove_prices(apps, schema_editor):
    apps.get_model("usage", "ModelPrice").objects.filter(source=SOURCE).delete()


class Migration(migrations.Migration):
    dependencies = [("usage", "0001_initial")]

    operations = [migrations.RunPython(add_prices, remove_prices)]
