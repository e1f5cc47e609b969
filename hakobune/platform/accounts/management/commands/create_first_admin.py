from axes.utils import reset as reset_failed_logins
from django.core.management.base import BaseCommand

from hakobune.platform.accounts.services import create_first_admin, reset_one_time_password


class Command(BaseCommand):
    help = "Creates the first administrator and prints a one-time password (once)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="")
        parser.add_argument("--reset", action="store_true", help="print a new one-time password")

    def handle(self, *args, username, email, reset, **options):
        user, password = create_first_admin(username=username, email=email)
        if password is None and reset:
            # The new password revokes the account's API tokens, and lifts a
            # lockout from failed logins, so it works at once.
            password = reset_one_time_password(user)
            reset_failed_logins(username=username)
        if password:
            self.stdout.write(f"  login:     {username}")
            self.stdout.write(f"  password:  {password}   (one-time: you choose your own at first login)")
        else:
            self.stdout.write(
                f"  login:     {username}   (password chosen at first login; "
                "`make admin-password` prints a new one-time password)"
            )
