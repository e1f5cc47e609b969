from django import forms

from .models import dns_label_validator


class NewTeamForm(forms.Form):
    name = forms.CharField(
        max_length=30,
        validators=[dns_label_validator],
        help_text="Lowercase letters, digits and hyphens; part of every service address of the team.",
        widget=forms.TextInput(attrs={"placeholder": "my-team", "autocomplete": "off", "autofocus": True}),
    )
