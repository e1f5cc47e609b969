from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "hakobune.platform.api"
    label = "api"
    verbose_name = "REST API"
