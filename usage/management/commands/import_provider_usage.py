from __future__ import annotations

import argparse
from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Sum

from usage.models import ProviderDailyUsage
from usage.provider_import import import_provider_usage, utc_days_back

MAX_DAYS = 366


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a date like 2025-01-31") from None


class Command(BaseCommand):
    help = (
        "Import the provider's own daily usage and costs with every active admin key "
        "(UTC days; default: yesterday and today). Re-importing a day replaces its figures."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, help="the last N UTC days, today included")
        parser.add_argument("--start", type=_day, help="first UTC day, YYYY-MM-DD")
        parser.add_argument("--end", type=_day, help="last UTC day, YYYY-MM-DD (default today)")

    def handle(self, *, days, start, end, **options):
        start, end = self._range(days, start, end)
        counts = import_provider_usage(start, end)
        if not counts["keys"]:
            self.stdout.write(
                "No active admin keys: add a provider key of kind 'admin' (sk-admin-…) to a "
                "project to import the provider's usage."
            )
            return
        self.stdout.write(
            f"Provider usage {start} … {end} (UTC): {counts['imported']} of {counts['keys']} "
            f"admin keys imported, {counts['usage_rows']} usage rows and "
            f"{counts['cost_rows']} cost rows stored."
        )
        self._print_days(start, end)
        if counts["rejected"] or counts["failed"]:
            self.stderr.write(
                f"{counts['rejected']} admin keys were rejected by the provider (401) and "
                f"{counts['failed']} failed; the log above names them."
            )
            raise SystemExit(1)

    def _range(self, days: int | None, start: date | None, end: date | None) -> tuple[date, date]:
        if days is not None and (start or end):
            raise CommandError("Use either --days or --start/--end, not both.")
        if days is not None:
            if not 1 <= days <= MAX_DAYS:
                raise CommandError(f"--days must be between 1 and {MAX_DAYS}.")
            return utc_days_back(days)
        if start is None and end is None:
            return utc_days_back(2)
        if start is None:
            raise CommandError("--end needs --start.")
        end = end or utc_days_back(1)[1]
        if start > end:
            raise CommandError("--start must be on or before --end.")
        if (end - start).days >= MAX_DAYS:
            raise CommandError(f"Import at most {MAX_DAYS} days at a time.")
        return start, end

    def _print_days(self, start: date, end: date) -> None:
        rows = (
            ProviderDailyUsage.objects.filter(day__gte=start, day__lte=end)
            .values("day", "provider_project_id", "project__slug")
            .annotate(
                requests=Sum("requests"),
                input=Sum("input_tokens"),
                output=Sum("output_tokens"),
                cost=Sum("cost_usd"),
            )
            .order_by("day", "provider_project_id")
        )
        for row in rows:
            project = row["project__slug"] or "(no keymeter project)"
            cost = "–" if row["cost"] is None else f"${row['cost'].normalize():f}"
            self.stdout.write(
                f"  {row['day']}  {row['provider_project_id'] or '(no project)'} → {project}: "
                f"{row['requests']} requests, {row['input']} input / {row['output']} output "
                f"tokens, cost {cost}"
            )
