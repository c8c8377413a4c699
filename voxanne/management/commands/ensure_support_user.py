"""Make sure a support-staff superuser exists; print its login the first time."""

import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from voxanne.models import User
from voxanne.tenancy import system_context

DEFAULT_EMAIL = "support@voxanne.local"


class Command(BaseCommand):
    help = "Create the support superuser if none exists (login printed once, kept in .data/)."

    def add_arguments(self, parser):
        parser.add_argument("--email", default=DEFAULT_EMAIL)

    def handle(self, *args, email: str, **options):
        login_file = Path(settings.BASE_DIR) / ".data" / "support-login.txt"
        with system_context("ensure_support_user"):
            if User.objects.filter(is_superuser=True).exists():
                where = f" (login in {login_file})" if login_file.exists() else ""
                self.stdout.write(f"Support superuser exists{where}.")
                return
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(email=email, password=password)
        login_file.parent.mkdir(exist_ok=True)
        login_file.write_text(f"{email}\n{password}\n")
        login_file.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(f"Support superuser created: {email} / {password}"))
        self.stdout.write(f"(also saved to {login_file}; change it in admin)")
