from django import forms

from hakobune.runtime.firewall import allowed_network

from .models import TeamPolicy


class TeamPolicyForm(forms.ModelForm):
    class Meta:
        model = TeamPolicy
        fields = ["max_services", "max_cpu", "max_memory_mb", "review", "allowed_networks"]
        labels = {
            "max_services": "Most services", "max_cpu": "CPU cores at once", "max_memory_mb": "Memory at once (MiB)",
            "review": "New services", "allowed_networks": "Private networks it may reach",
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
        for name, value in (defaults or {}).items():
            self.fields[name].widget.attrs["placeholder"] = f"empty: {value:g}" if isinstance(value, float) else f"empty: {value}"
