from decimal import Decimal

from django import forms
from django.conf import settings

from hakobune.platform.accounts.models import dns_label_validator

from .backends import can
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

    def __init__(self, *args, service=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Runtimes that scale on requests by themselves (Cloud Run).
        if service is not None and can(service, "autoscaling"):
            from .models import INGRESS_CHOICES

            self.fields["min_instances"] = forms.IntegerField(
                label="Fewest instances", required=False, min_value=0, max_value=100,
                help_text="Kept warm even without requests (they cost money); empty: 0, the first request waits for a start.",
            )
            self.fields["max_instances"] = forms.IntegerField(
                label="Most instances", required=False, min_value=1, max_value=100,
                help_text="Empty: the Instances number above.",
            )
            self.fields["concurrency"] = forms.IntegerField(
                label="Requests per instance", required=False, min_value=1, max_value=1000,
                help_text="Served at once before another instance starts; empty: the platform's default (80).",
            )
            self.fields["request_timeout"] = forms.IntegerField(
                label="Request timeout (seconds)", required=False, min_value=1, max_value=3600,
                help_text="A longer request is cut off; empty: the platform's default (300).",
            )
            self.fields["ingress"] = forms.ChoiceField(label="Requests from", required=False, choices=INGRESS_CHOICES)
        # How the image is built, where the service's backend builds it itself (Cloud Build).
        if service is not None and can(service, "remote_build"):
            from .models import Service

            self.fields["cloud_builder"] = forms.ChoiceField(
                label="Builder", required=False, choices=Service._meta.get_field("cloud_builder").choices,
                help_text="Hakobune's plan builds the Dockerfile shown for each deploy; Google Cloud's buildpacks "
                "build the source their own way (gcr.io/buildpacks/builder). Applies from the next deploy.",
            )

    def clean(self):
        data = super().clean()
        low, high = data.get("min_instances"), data.get("max_instances")
        if low is not None and high is not None and low > high:
            self.add_error("min_instances", "The fewest instances cannot be more than the most.")
        return data

    def clean_health_check_path(self):
        path = self.cleaned_data["health_check_path"].strip()
        if not path.startswith("/") or any(ch.isspace() for ch in path):
            raise forms.ValidationError("A path on your app, starting with /, like /healthz.")
        return path


class CloudRunSettingsForm(forms.ModelForm):
    """Staff: the platform's or a team's Cloud Run settings. The key is taken
    as an uploaded file or pasted, stored encrypted, and never shown again."""

    key_file = forms.FileField(label="Service-account key (JSON file)", required=False)
    key_text = forms.CharField(
        label="…or paste the key", required=False, widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text="Stored encrypted; only the account's email is shown after.",
    )

    class Meta:
        from .models import TeamCloudRunSettings

        model = TeamCloudRunSettings
        fields = ["project", "region", "repository", "bucket", "service_account", "credentials"]
        labels = {"project": "Project ID", "service_account": "Runs as (service account email)", "credentials": "Credentials"}

    def __init__(self, *args, inherited: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # What an empty field means: the value of the layer above.
        inherited = dict(inherited or {})
        if self.instance.project and self.instance.project != inherited.get("project"):
            # Another project: the defaults are that project's, not the ones above.
            inherited.update(bucket=f"{self.instance.project}_cloudbuild", service_account="")
        for name, value in inherited.items():
            if name in self.fields and value:
                self.fields[name].widget.attrs["placeholder"] = f"empty: {value}"
        if self.instance.key_email:
            self.fields["key_file"].help_text = f"Stored now: a key of {self.instance.key_email}. Give another to replace it."

    def clean(self):
        from .cloud_settings import read_service_account_key

        data = super().clean()
        upload = data.get("key_file")
        text = data.get("key_text", "").strip()
        if upload:
            if upload.size > 64 * 1024:
                self.add_error("key_file", "A service-account key is a few KB of JSON; this file is something else.")
                return data
            text = upload.read().decode("utf-8", "replace")
        self.new_key = ""
        if text:
            try:
                read_service_account_key(text)
            except ValueError as exc:
                self.add_error("key_file" if upload else "key_text", str(exc))
                return data
            self.new_key = text
            data["credentials"] = self.instance.Credentials.KEY
        if data.get("credentials") == self.instance.Credentials.KEY and not (self.new_key or self.instance.key_encrypted):
            self.add_error("key_file", "Give the service-account key to use.")
        return data

    def save(self, commit=True):
        from .cloud_settings import store_key

        row = super().save(commit=False)
        if self.new_key:
            store_key(row, self.new_key)
        elif row.credentials != row.Credentials.KEY:
            # A key that is not used is not kept.
            row.key_encrypted = row.key_email = ""
        if commit:
            row.save()
        return row
