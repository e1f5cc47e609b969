from django import forms

from .models import dns_label_validator


class NewTeamForm(forms.Form):
    name = forms.CharField(
        max_length=30,
        validators=[dns_label_validator],
        help_text="Lowercase letters, digits and hyphens; part of every service address of the team.",
        widget=forms.TextInput(attrs={"placeholder": "my-team", "autocomplete": "off", "autofocus": True}),
    )


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What it is for, like “laptop” or “GitHub Actions”.",
        widget=forms.TextInput(attrs={"placeholder": "laptop", "autocomplete": "off"}),
    )
    expires_in_days = forms.TypedChoiceField(
        label="Expires",
        choices=[("", "Never"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")],
        coerce=int,
        empty_value=None,
        required=False,
    )
