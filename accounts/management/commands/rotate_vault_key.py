from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.keys import reencrypt_all_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider key with the first VAULT_KEYS entry. Put the new "
        "key first in VAULT_KEYS, keep the old ones after it, run this, then drop the old ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, batch_size, **options):
        counts = reencrypt_all_keys(batch_size=batch_size)
        self.stdout.write(
            f"{counts['reencrypted']} of {counts['rows']} provider keys re-encrypted with "
            f"the first of {len(settings.VAULT_KEYS)} vault keys; {counts['failed']} failed."
        )
        if counts["failed"]:
            self.stderr.write(
                "Some secrets could not be decrypted with any VAULT_KEYS entry: add the "
                "vault key they were encrypted with to VAULT_KEYS and run this again."
            )
            raise SystemExit(1)
