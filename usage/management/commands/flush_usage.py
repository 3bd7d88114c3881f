from __future__ import annotations

from django.core.management.base import BaseCommand

from usage import pipeline


class Command(BaseCommand):
    help = "Replay spooled call records and flush the call stream into the call log and rollups."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument(
            "--time-budget", type=float, default=None,
            help="stop after this many seconds (default: until the stream is drained)",
        )  # fmt: skip

    def handle(self, batch_size: int, time_budget: float | None, **options):
        result = pipeline.drain(batch_size=batch_size, time_budget=time_budget)
        self.stdout.write(
            f"replayed {result.replayed} spooled, read {result.read}, "
            f"inserted {result.inserted}, duplicates {result.duplicates}, "
            f"skipped {result.skipped}, poison {result.poison}, "
            f"reclaimed {result.reclaimed}, cost ${result.cost_usd}"
        )
