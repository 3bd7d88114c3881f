from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.leaks import scan_paths
from accounts.models import ProviderKey


class Command(BaseCommand):
    help = (
        "Look for OpenAI-shaped keys in files and directories (skipping .git, node_modules, "
        "binaries and files over 5 MB). Prints file:line and prefix…last4 only, marks stored "
        "keys found as leaked and exits with status 1 when there is one."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument(
            "--verbose-skips",
            action="store_true",
            help="also list the files that were skipped and why",
        )

    def handle(self, paths: list[str], verbose_skips: bool, **options):
        findings, skipped = scan_paths(paths)
        stored = {
            k.pk: k
            for k in ProviderKey.objects.filter(
                pk__in={pk for f in findings for pk in f.stored_key_ids}
            ).select_related("project", "environment")
        }
        for f in findings:
            line = f"{f.where}: {f.masked} (fingerprint {f.fingerprint[:12]})"
            for pk in f.stored_key_ids:
                key = stored[pk]
                line += (
                    f"  LEAKED stored key {pk} {key.project.slug}/{key.environment.name} {key.name}"
                )
            self.stdout.write(line)
        if verbose_skips:
            for path, reason in skipped:
                self.stdout.write(f"skipped {path}: {reason}")
        for path, reason in skipped:
            if reason == "not found":
                self.stderr.write(f"{path}: no such file or directory")
        self.stdout.write(
            f"{len(findings)} key-shaped strings found, {len(stored)} of them stored in "
            f"keymeter; {len(skipped)} files skipped."
        )
        if stored:
            raise CommandError(
                f"{len(stored)} stored key{'s' if len(stored) != 1 else ''} found in the "
                "scanned files: revoke at the provider and rotate in keymeter.",
                returncode=1,
            )
