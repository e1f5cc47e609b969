from django.apps import AppConfig


class AddOnsConfig(AppConfig):
    name = "hakobune.platform.addons"
    label = "addons"

    def ready(self):
        # The team's disk quota counts the backups kept on this host (governance/disk_quota.py).
        from hakobune.platform.governance.disk_quota import register_disk_user

        from .backups import backup_bytes_of_team

        register_disk_user("backups", backup_bytes_of_team)
