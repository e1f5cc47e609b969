from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "hakobune.platform.accounts"
    label = "accounts"
    # The administration pages name it (the team deletion confirmation's path).
    verbose_name = _("Teams and accounts")
