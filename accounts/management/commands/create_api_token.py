from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.tokens import create_api_token


class Command(BaseCommand):
    help = "Create a personal API token (kmu_…) for a user and print it once."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="cli", help="a label for the token")

    def handle(self, email, name, **options):
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with email {email}. Create one with createsuperuser.")
        token, plaintext = create_api_token(user, name)
        self.stderr.write(f"Created API token '{token.name}' for {user.email}; "
                          "it is shown only this once:")
        self.stdout.write(plaintext)
