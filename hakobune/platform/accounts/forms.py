from django import forms
from django.utils.translation import gettext_lazy as _

from .models import dns_label_validator


class NewTeamForm(forms.Form):
    name = forms.CharField(
        max_length=30,
        validators=[dns_label_validator],
        label=_("Name"), help_text=_("Lowercase letters, digits and hyphens; part of every service address of the team."),
        widget=forms.TextInput(attrs={"placeholder": "my-team", "autocomplete": "off", "autofocus": True}),
    )


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        label=_("Name"), help_text=_("What it is for, like “laptop” or “GitHub Actions”."),
        widget=forms.TextInput(attrs={"placeholder": _("laptop"), "autocomplete": "off"}),
    )
    expires_in_days = forms.TypedChoiceField(
        label=_("Expires"),
        choices=[("", _("Never")), ("7", _("In 7 days")), ("30", _("In 30 days")), ("90", _("In 90 days")), ("365", _("In a year"))],
        coerce=int,
        empty_value=None,
        required=False,
    )
