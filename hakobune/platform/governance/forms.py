from django import forms

from .models import TeamPolicy


class TeamPolicyForm(forms.ModelForm):
    class Meta:
        model = TeamPolicy
        fields = ["max_services", "max_cpu", "max_memory_mb", "review"]
        labels = {
            "max_services": "Most services", "max_cpu": "CPU cores at once", "max_memory_mb": "Memory at once (MiB)",
            "review": "New services",
        }

    def __init__(self, *args, defaults=None, **kwargs):
        super().__init__(*args, **kwargs)
        for name, value in (defaults or {}).items():
            self.fields[name].widget.attrs["placeholder"] = f"empty: {value:g}" if isinstance(value, float) else f"empty: {value}"
