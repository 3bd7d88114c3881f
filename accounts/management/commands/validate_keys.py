from __future__ import annotations

from django.core.management.base import BaseCommand

from accounts.models import ProviderKey
from accounts.validation import validate_all_keys


class Command(BaseCommand):
    help = "Ask the provider whether each active key still works (GET /models with the key)."

    def handle(self, **options):
        report = validate_all_keys()
        names = {
            k.pk: f"{k.project.slug}/{k.environment.name} {k.name} ({k.masked})"
            for k in ProviderKey.objects.filter(
                pk__in=[r.key_id for r in report.results]
            ).select_related("project", "environment")
        }
        for r in report.results:
            self.stdout.write(f"key {r.key_id} {names.get(r.key_id, '')}: {r.result} ({r.detail})")
        counts = report.as_dict()
        self.stdout.write(
            f"{len(report.results)} keys checked: {counts['valid']} valid, "
            f"{counts['invalid']} invalid, {counts['unknown']} unknown."
        )
