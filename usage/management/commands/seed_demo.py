from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from usage import demo


class Command(BaseCommand):
    help = (
        "Create demo projects, users, keys, tokens, budgets and DAYS of calls (pushed "
        "through the real call pipeline). Safe to run again: nothing is duplicated."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=90, help="days of calls (default 90)")

    def handle(self, days: int, **options):
        if days < 1 or days > 400:
            raise CommandError("--days must be between 1 and 400.")
        started = time.monotonic()
        report = demo.seed_demo(days=days)
        for line in report.lines():
            self.stdout.write(line)
        self.stdout.write(f"done in {time.monotonic() - started:.1f} s")
