from django.apps import AppConfig


class VolumesConfig(AppConfig):
    name = "hakobune.platform.volumes"
    label = "volumes"

    def ready(self):
        # The team's disk quota counts its volumes (governance/disk_quota.py).
        from hakobune.platform.governance.disk_quota import register_disk_user

        from .models import volume_bytes_of

        register_disk_user("volumes", volume_bytes_of)
