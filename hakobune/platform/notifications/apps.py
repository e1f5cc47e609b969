from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "hakobune.platform.notifications"
    label = "notifications"
