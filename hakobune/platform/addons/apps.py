from django.apps import AppConfig


class AddOnsConfig(AppConfig):
    name = "hakobune.platform.addons"
    label = "addons"
