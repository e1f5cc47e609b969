from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "hakobune.platform.accounts"
    label = "accounts"
