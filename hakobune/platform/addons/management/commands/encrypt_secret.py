"""Prints a secret encrypted with this platform's key (HAKOBUNE_ENCRYPTION_KEY,
else one derived from SECRET_KEY), as a "fernet:…" value, for a setting
that may be given encrypted (BACKUP_S3_SECRET_ACCESS_KEY). The secret is read
from standard input, never from the command line (which others can read).

    python manage.py encrypt_secret < secret.txt"""

import sys

from django.core.management.base import BaseCommand, CommandError

from hakobune.platform.crypto import encrypt


class Command(BaseCommand):
    help = "Encrypt a secret read from standard input with the platform's key."

    def handle(self, *args, **options):
        if sys.stdin.isatty():
            self.stderr.write("Type the secret, then press Enter (it is not shown):")
            import getpass

            secret = getpass.getpass("")
        else:
            secret = sys.stdin.read().strip()
        if not secret:
            raise CommandError("No secret was given on standard input.")
        self.stdout.write(encrypt(secret))
