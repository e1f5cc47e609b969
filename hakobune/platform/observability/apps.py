from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "hakobune.platform.observability"
    label = "observability"
