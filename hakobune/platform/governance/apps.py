from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "hakobune.platform.governance"
    label = "governance"
