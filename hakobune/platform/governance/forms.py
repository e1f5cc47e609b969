from django import forms
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

from hakobune.runtime.firewall import allowed_network

from .models import TeamPolicy


# The model's review choices, marked for translation (shown through gettext).
REVIEW_WORDS = [
    gettext_noop("The platform's default"),
    gettext_noop("Reviewed before their first deploy goes live"),
    gettext_noop("Not reviewed"),
]


class TeamPolicyForm(forms.ModelForm):
    class Meta:
        model = TeamPolicy
        fields = ["max_services", "max_cpu", "max_memory_mb", "max_disk_mb", "review", "allowed_networks"]
        labels = {
            "max_services": _("Most services"), "max_cpu": _("CPU cores at once"), "max_memory_mb": _("Memory at once (MiB)"),
            "max_disk_mb": _("Disk for volumes and backups (MiB)"),
            "review": _("New services"), "allowed_networks": _("Private networks it may reach"),
        }
        help_texts = {
            "max_cpu": _("CPU cores all its services may hold at once."),
            "max_memory_mb": _("MiB all its services may hold at once."),
            "max_disk_mb": _("MiB its volumes and backups may hold on disk together, as last measured."),
            "allowed_networks": _("Private networks its services may reach (a company database, say), one per line like "
                                  "10.20.0.0/16. Every other private range, the host and other teams stay out of reach."),
        }
        widgets = {"allowed_networks": forms.Textarea(attrs={"rows": 2, "placeholder": "10.20.0.0/16"})}

    def clean_allowed_networks(self):
        networks = []
        for entry in self.cleaned_data["allowed_networks"].split():
            try:
                networks.append(allowed_network(entry))
            except ValueError as exc:
                raise forms.ValidationError(str(exc)[:1].upper() + str(exc)[1:] + ".")
        return "\n".join(dict.fromkeys(networks))

    def __init__(self, *args, defaults=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["review"].choices = [(value, gettext(label)) for value, label in self.fields["review"].choices]
        for name, value in (defaults or {}).items():
            self.fields[name].widget.attrs["placeholder"] = gettext("empty: %(value)s") % {
                "value": f"{value:g}" if isinstance(value, float) else value}
