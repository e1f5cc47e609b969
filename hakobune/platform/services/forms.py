from decimal import Decimal

from django import forms
from django.conf import settings

from hakobune.platform.accounts.models import dns_label_validator

from .sources import check_git_source

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.xz", ".txz")
SOURCE_CHOICES = [("archive", "Upload an archive"), ("git", "From a Git repository")]


class ArchiveField(forms.FileField):
    def clean(self, data, initial=None):
        upload = super().clean(data, initial)
        if not upload:
            return upload
        if not upload.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise forms.ValidationError(
                f"{upload.name} is not an archive Hakobune takes. Upload a .zip, .tar.gz, .tar or .tar.xz of your app's folder."
            )
        if upload.size > settings.SOURCE_MAX_ARCHIVE_BYTES:
            raise forms.ValidationError(
                f"{upload.name} is {upload.size / 1e6:.0f} MB; the limit is {settings.SOURCE_MAX_ARCHIVE_BYTES / 1e6:.0f} MB. "
                "Leave out dependencies and build output (node_modules, .venv, dist)."
            )
        if upload.size == 0:
            raise forms.ValidationError(f"{upload.name} is empty.")
        return upload


def archive_widget():
    return forms.ClearableFileInput(
        attrs={"accept": ",".join(ARCHIVE_SUFFIXES), "data-max-bytes": settings.SOURCE_MAX_ARCHIVE_BYTES}
    )


def clean_subdir(value: str) -> str:
    value = (value or "").strip().strip("/")
    if value:
        # Whether the folder exists is known once the source is fetched; here
        # only its spelling is judged.
        if ".." in value.split("/") or "\\" in value:
            raise forms.ValidationError(f"{value!r} must be a folder inside the source, like services/api.")
    return value


class NewServiceForm(forms.Form):
    name = forms.CharField(
        max_length=30,
        validators=[dns_label_validator],
        help_text="Lowercase letters, digits and hyphens. It becomes part of the address.",
        widget=forms.TextInput(attrs={"placeholder": "my-app", "autocomplete": "off", "autofocus": True}),
    )
    source_kind = forms.ChoiceField(
        choices=SOURCE_CHOICES, initial="archive", required=False, widget=forms.RadioSelect, label="Source"
    )
    source = ArchiveField(
        label="Source archive", required=False, help_text="A .zip or .tar.gz of your app's folder.", widget=archive_widget()
    )
    git_url = forms.CharField(
        label="Repository URL", required=False, max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "https://github.com/you/app.git", "autocomplete": "off"}),
    )
    git_ref = forms.CharField(label="Branch, tag or commit", required=False, initial="main", max_length=255)
    git_token = forms.CharField(
        label="Access token (private repositories)", required=False, max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted; never shown again.",
    )
    git_submodules = forms.BooleanField(
        label="Also fetch the repository's submodules", required=False,
        help_text="Off unless your app needs them; each submodule's address is checked like the repository's.",
    )
    source_subdir = forms.CharField(
        label="App folder", required=False, max_length=255,
        help_text="Leave empty when the app is at the top. For a monorepo: the app's folder, like services/api.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Where it runs: offered only when the platform has more than one target.
        if len(settings.RUNTIME_BACKENDS) > 1:
            self.fields["target"] = forms.ChoiceField(
                label="Runs on", choices=[(alias, alias) for alias in settings.RUNTIME_BACKENDS],
                initial=settings.DEFAULT_RUNTIME_BACKEND,
            )

    def clean_source_subdir(self):
        return clean_subdir(self.cleaned_data.get("source_subdir"))

    def clean_source_kind(self):
        return self.cleaned_data.get("source_kind") or "archive"

    def clean(self):
        data = super().clean()
        if data.get("source_kind") == "git":
            if not data.get("git_url"):
                self.add_error("git_url", "Give the repository's https:// address.")
            else:
                try:
                    checked = check_git_source(data["git_url"], data.get("git_ref") or "main", data.get("git_token", ""))
                except ValueError as exc:
                    self.add_error("git_url" if "address" in str(exc) else "git_ref", str(exc))
                else:
                    data["git_ref"] = checked.ref
        elif not data.get("source") and "source" not in self.errors:
            self.add_error("source", "Choose the archive of your app to upload.")
        return data


class DeployForm(forms.Form):
    source = ArchiveField(label="Source archive", required=False, widget=archive_widget())
    git_ref = forms.CharField(label="Branch, tag or commit", required=False, max_length=255)


class ServiceSettingsForm(forms.Form):
    cpu = forms.DecimalField(label="CPU (cores)", min_value=Decimal("0.1"), max_value=Decimal("8"), decimal_places=2)
    memory_mb = forms.IntegerField(label="Memory (MiB)", min_value=64, max_value=16384)
    port = forms.IntegerField(label="Port ($PORT)", min_value=1024, max_value=65535)
    health_check_path = forms.CharField(label="Health-check path", max_length=200)
    public = forms.BooleanField(
        label="Public", required=False,
        help_text="Off: no public address; your team's other services reach it at http://<name>:<port>.",
    )
    start_command = forms.CharField(
        label="Start command", required=False, max_length=500,
        help_text="Empty: what Hakobune detected (or your hakobune.toml says). Applies from the next deploy.",
    )
    build_command = forms.CharField(label="Build command", required=False, max_length=500,
                                    help_text="Run after the dependencies are installed. Applies from the next deploy.")

    def clean_health_check_path(self):
        path = self.cleaned_data["health_check_path"].strip()
        if not path.startswith("/") or any(ch.isspace() for ch in path):
            raise forms.ValidationError("A path on your app, starting with /, like /healthz.")
        return path
