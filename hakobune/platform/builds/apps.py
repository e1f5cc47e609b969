from django.apps import AppConfig


class BuildsConfig(AppConfig):
    name = "hakobune.platform.builds"
    label = "builds"
