from django import forms
from django.conf import settings

from hakobune.platform.accounts.models import dns_label_validator

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.xz")


class ArchiveField(forms.FileField):
    def clean(self, data, initial=None):
        upload = super().clean(data, initial)
        if upload is None:
            return upload
        if not upload.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise forms.ValidationError(
                f"{upload.name} is not an archive Hakobune takes. Upload a .zip or .tar.gz of your app's folder."
            )
        if upload.size > settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"{upload.name} is {upload.size / 1e6:.0f} MB; the limit is {settings.MAX_UPLOAD_BYTES / 1e6:.0f} MB. "
                "Leave out dependencies and build output (node_modules, .venv, dist)."
            )
        if upload.size == 0:
            raise forms.ValidationError(f"{upload.name} is empty.")
        return upload


class NewServiceForm(forms.Form):
    name = forms.CharField(
        max_length=30,
        validators=[dns_label_validator],
        help_text="Lowercase letters, digits and hyphens. It becomes part of the address.",
        widget=forms.TextInput(attrs={"placeholder": "my-app", "autocomplete": "off", "autofocus": True}),
    )
    source = ArchiveField(
        label="Source archive",
        help_text="A .zip or .tar.gz of your app's folder.",
        widget=forms.ClearableFileInput(attrs={"accept": ",".join(ARCHIVE_SUFFIXES)}),
    )


class DeployForm(forms.Form):
    source = ArchiveField(
        label="Source archive",
        widget=forms.ClearableFileInput(attrs={"accept": ",".join(ARCHIVE_SUFFIXES)}),
    )
