from django.core.management.base import BaseCommand

from hakobune.platform.builds.disk import human_size
from hakobune.platform.services.housekeeping import prune


class Command(BaseCommand):
    help = ("Prunes what rollback does not need: old images, build leftovers and source snapshots "
            "(docs/architecture.md, \"Disk\").")

    def handle(self, *args, **options):
        outcome = prune()
        self.stdout.write(f"  ✓ freed {human_size(outcome['bytes_freed'])}: {outcome['images_removed']} image tag(s), "
                          f"{outcome['snapshots_deleted']} source snapshot(s), build leftovers "
                          f"{human_size(outcome['leftover_bytes'])}")
        for error in outcome["errors"]:
            self.stderr.write(f"  ✗ {error}")
