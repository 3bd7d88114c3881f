from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Project
from usage import alerts, budgets


class Command(BaseCommand):
    help = (
        "Evaluate budgets now (what the 5-minute beat does): print each budget's spend, "
        "limit and the alerts it created; with no --project also health alerts, lost "
        "alert emails and the gateway's hard limits."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", action="append", metavar="SLUG",
                            help="only this project (repeatable)")  # fmt: skip

    def handle(self, project: list[str] | None = None, **options):
        project_ids = None
        if project:
            found = dict(Project.objects.filter(slug__in=project).values_list("slug", "pk"))
            missing = sorted(set(project) - set(found))
            if missing:
                raise CommandError(f"No such project: {', '.join(missing)}")
            project_ids = list(found.values())
        run = budgets.run_checks(project_ids)
        if not run.budgets:
            self.stdout.write("No budgets to check.")
        for check in run.budgets:
            self.stdout.write(check.line())
        for episode in run.health:
            self.stdout.write(f"{episode.project.slug}: health alert: "
                              f"{alerts.describe_health(episode)}")  # fmt: skip
        if project_ids is None:
            self.stdout.write(f"re-queued {run.requeued} unsent alert(s); "
                              f"published {run.published} hard limit(s)")  # fmt: skip
