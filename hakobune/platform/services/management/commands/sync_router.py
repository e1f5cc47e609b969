from django.core.management.base import BaseCommand

from hakobune.platform.services.housekeeping import sync_router


class Command(BaseCommand):
    help = "Rewrites the router's configuration from the database (every live service)."

    def handle(self, *args, **options):
        sync_router()
        self.stdout.write("  ✓ router configured from the database")
