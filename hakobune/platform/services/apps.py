from django.apps import AppConfig


class ServicesConfig(AppConfig):
    name = "hakobune.platform.services"
    label = "services"
