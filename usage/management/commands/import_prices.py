"""manage.py import_prices FILE [--effective-from YYYY-MM-DD]: load a LiteLLM price map."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from usage.pricing import import_litellm_prices, to_datetime


class Command(BaseCommand):
    help = (
        "Import a LiteLLM-style price map (model_prices_and_context_window.json). "
        "Adds a price row only where the price differs from the one in force."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path to the JSON price map")
        parser.add_argument(
            "--effective-from",
            metavar="YYYY-MM-DD",
            help="the day (UTC) the prices take effect; default: now",
        )

    def handle(self, file: str, effective_from: str | None = None, **options):
        start = None
        if effective_from:
            try:
                start = to_datetime(date.fromisoformat(effective_from))
            except ValueError:
                raise CommandError(
                    f"--effective-from must be a date like 2025-01-31, not {effective_from!r}."
                ) from None
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        try:
            # parse_float=Decimal keeps 2.5e-06 exactly as written.
            data = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{file} is not valid JSON: {exc}") from None
        try:
            counts = import_litellm_prices(data, start)
        except ValueError as exc:
            raise CommandError(f"{file}: {exc}") from None
        self.stdout.write(
            f"Imported prices from {file}: {counts['created']} created, "
            f"{counts['unchanged']} unchanged, {counts['skipped']} skipped."
        )
