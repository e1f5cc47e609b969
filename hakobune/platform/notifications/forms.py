from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from .models import AlertRules, TargetKind


class TargetForm(forms.Form):
    name = forms.CharField(
        max_length=100, label=_("Name"), help_text=_("How the page names it, like “ops e-mail” or “#deploys”."),
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    kind = forms.ChoiceField(label=_("Kind"), choices=TargetKind.choices)
    address = forms.CharField(
        max_length=2000, label=_("Address"),
        help_text=_("An e-mail address, or the webhook URL that Slack, Discord or Microsoft Teams (a Workflows "
                    "webhook) gave you, or any https:// URL that takes a JSON POST. It is stored encrypted."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    language = forms.ChoiceField(label=_("Language of its messages"), choices=settings.LANGUAGES)


class RulesForm(forms.ModelForm):
    class Meta:
        model = AlertRules
        fields = ["deploy_failed", "crash_loop", "memory_high", "memory_percent", "error_rate", "error_rate_percent",
                  "backup_failed"]
        labels = {
            "deploy_failed": _("A deploy failed"),
            "crash_loop": _("A service keeps crashing"),
            "memory_high": _("A service is near its memory limit"),
            "memory_percent": _("Memory alert at (percent of the limit)"),
            "error_rate": _("Many of a service's requests fail (5xx)"),
            "error_rate_percent": _("Error alert at (percent of requests)"),
            "backup_failed": _("A backup failed"),
        }
        help_texts = {
            "memory_percent": _("Between 50 and 100."),
            "error_rate_percent": _("Over the last few minutes, once the service had a few dozen requests."),
        }


class ServiceRulesForm(RulesForm):
    """Rules for one service, replacing the team's for it."""

    service = forms.ChoiceField(label=_("Service"))
    field_order = ["service"]

    def __init__(self, *args, services=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["service"].choices = [(service.name, service.name) for service in services]
