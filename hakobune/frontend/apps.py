from django.apps import AppConfig


class FrontendConfig(AppConfig):
    name = "hakobune.frontend"
    label = "frontend"
