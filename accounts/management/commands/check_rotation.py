from __future__ import annotations

from django.core.management.base import BaseCommand

from accounts.rotation import check_rotation


class Command(BaseCommand):
    help = (
        "Stage every active provider key and gateway token for rotation (ok, due, overdue), "
        "email the project's admins once per stage change and end rotation grace periods."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--queue",
            action="store_true",
            help="queue the emails for the Celery worker instead of sending them now",
        )

    def handle(self, queue: bool, **options):
        report = check_rotation(deliver_now=not queue)
        for s in report.staged:
            line = (
                f"{s.kind} {s.id} {s.project}/{s.environment} {s.name} ({s.masked}): "
                f"{s.age_days} days, {s.stage}"
            )
            if s.notice is not None:
                if s.emailed:
                    line += f"; emailed {', '.join(s.emailed)}"
                else:
                    line += "; email queued"
            self.stdout.write(line)
        notices = len(report.notices)
        self.stdout.write(
            f"{len(report.staged)} keys and tokens staged, {notices} new stage "
            f"notice{'s' if notices != 1 else ''}, {report.revoked} retired "
            f"key{'s' if report.revoked != 1 else ''} revoked after the grace period."
        )
