from decimal import Decimal

from django import forms
from django.conf import settings
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from hakobune.platform.accounts.models import dns_label_validator
from hakobune.runtime.release_config import Setting, all_settings, problems
from hakobune.worker.source import archive_kind

from .backends import can
from .sources import check_git_source

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.xz", ".txz")
SOURCE_CHOICES = [("archive", _("Upload an archive")), ("git", _("From a Git repository"))]


class ArchiveField(forms.FileField):
    def clean(self, data, initial=None):
        upload = super().clean(data, initial)
        if not upload:
            return upload
        if not upload.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise forms.ValidationError(
                gettext("%(name)s is not an archive Hakobune takes. Upload a .zip, .tar.gz, .tar or .tar.xz of your app's folder.")
                % {"name": upload.name}
            )
        if upload.size > settings.SOURCE_MAX_ARCHIVE_BYTES:
            raise forms.ValidationError(
                gettext("%(name)s is %(size)s MB; the limit is %(limit)s MB. "
                        "Leave out dependencies and build output (node_modules, .venv, dist).")
                % {"name": upload.name, "size": f"{upload.size / 1e6:.0f}", "limit": f"{settings.SOURCE_MAX_ARCHIVE_BYTES / 1e6:.0f}"}
            )
        if upload.size == 0:
            raise forms.ValidationError(gettext("%(name)s is empty.") % {"name": upload.name})
        if not looks_like_an_archive(upload):
            # Named .zip or .tar.gz, but something else inside (a renamed file, a web page saved by mistake).
            raise forms.ValidationError(
                gettext("%(name)s is named like an archive, but it is not one: its content is not a .zip, .tar, "
                        ".tar.gz or .tar.xz. Compress your app's folder again and upload the new file.")
                % {"name": upload.name}
            )
        return upload


def looks_like_an_archive(upload) -> bool:
    """Whether the upload begins as an archive the source intake reads."""
    try:
        upload.seek(0)
        head = upload.read(512)
        upload.seek(0)
    except (OSError, ValueError):
        return True  # unreadable here: the intake judges it
    return archive_kind(head) is not None


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
            raise forms.ValidationError(gettext("%(value)r must be a folder inside the source, like services/api.") % {"value": value})
    return value


class NewServiceForm(forms.Form):
    name = forms.CharField(
        max_length=30,
        validators=[dns_label_validator],
        label=_("Name"), help_text=_("Lowercase letters, digits and hyphens. It becomes part of the address."),
        widget=forms.TextInput(attrs={"placeholder": "my-app", "autocomplete": "off", "autofocus": True}),
    )
    source_kind = forms.ChoiceField(
        choices=SOURCE_CHOICES, initial="archive", required=False, widget=forms.RadioSelect, label=_("Source")
    )
    source = ArchiveField(
        label=_("Source archive"), required=False, help_text=_("A .zip or .tar.gz of your app's folder."), widget=archive_widget()
    )
    git_url = forms.CharField(
        label=_("Repository URL"), required=False, max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "https://github.com/you/app.git", "autocomplete": "off"}),
    )
    git_ref = forms.CharField(label=_("Branch, tag or commit"), required=False, initial="main", max_length=255)
    git_token = forms.CharField(
        label=_("Access token (private repositories)"), required=False, max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("Stored encrypted; never shown again."),
    )
    git_submodules = forms.BooleanField(
        label=_("Also fetch the repository's submodules"), required=False,
        help_text=_("Off unless your app needs them; each submodule's address is checked like the repository's."),
    )
    source_subdir = forms.CharField(
        label=_("App folder"), required=False, max_length=255,
        help_text=_("Leave empty when the app is at the top. For a monorepo: the app's folder, like services/api."),
    )

    addons = forms.MultipleChoiceField(
        label=_("Add-ons"), required=False, widget=forms.CheckboxSelectMultiple,
        help_text=_("Attached before the first deploy, so that its release phase (the database's migrations, "
                    "say) finds DATABASE_URL or REDIS_URL."),
    )

    def __init__(self, *args, addons=(), **kwargs):
        super().__init__(*args, **kwargs)
        # The team's add-ons, to attach at once (none: the field is not shown).
        self.fields["addons"].choices = [(addon.name, f"{addon.name} ({addon.get_kind_display()})") for addon in addons]
        # Where it runs: offered only when the platform has more than one target.
        if len(settings.RUNTIME_BACKENDS) > 1:
            self.fields["target"] = forms.ChoiceField(
                label=_("Runs on"), choices=[(alias, alias) for alias in settings.RUNTIME_BACKENDS],
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
                self.add_error("git_url", gettext("Give the repository's https:// address."))
            else:
                try:
                    checked = check_git_source(data["git_url"], data.get("git_ref") or "main", data.get("git_token", ""))
                except ValueError as exc:
                    self.add_error("git_url" if "address" in str(exc) else "git_ref", str(exc))
                else:
                    data["git_ref"] = checked.ref
        elif not data.get("source") and "source" not in self.errors:
            self.add_error("source", gettext("Choose the archive of your app to upload."))
        return data


class DeployForm(forms.Form):
    source = ArchiveField(label=_("Source archive"), required=False, widget=archive_widget())
    git_ref = forms.CharField(label=_("Branch, tag or commit"), required=False, max_length=255)


def setting_field(setting: Setting) -> forms.Field:
    """The form field of a declared setting: its type, bounds, label and help."""
    bounds = {"min_value": "min", "max_value": "max"}
    message = gettext("Give %(what)s.") % {"what": setting.in_words()}
    options = {"label": gettext(setting.label), "help_text": gettext(setting.help),
               "required": not (setting.optional or setting.blank)}
    if setting.check:
        options["validators"] = [_checked_by(setting)]
    if setting.type is bool:
        return forms.BooleanField(**{**options, "required": False})
    if setting.choices:
        return forms.ChoiceField(choices=[(value, gettext(label)) for value, label in setting.choices], **options)
    if setting.type is str:
        return forms.CharField(max_length=setting.max_length, **options)
    limits = {option: getattr(setting, name) for option, name in bounds.items() if getattr(setting, name) is not None}
    errors = {"min_value": message, "max_value": message, "invalid": message}
    if setting.type is float:
        exact = {option: Decimal(str(value)) for option, value in limits.items()}
        places = setting.digits[1] if setting.digits else None
        return forms.DecimalField(decimal_places=places, error_messages={**errors, "max_decimal_places": message},
                                  **exact, **options)
    return forms.IntegerField(error_messages=errors, **limits, **options)


def _checked_by(setting: Setting):
    def validate(value):
        problem = setting.check(value)
        if problem:
            raise forms.ValidationError(problem)

    return validate


class ServiceSettingsForm(forms.Form):
    """The service's declared settings that its runtime honours (a setting
    that needs a capability the runtime lacks is left out)."""

    def __init__(self, *args, service=None, **kwargs):
        super().__init__(*args, **kwargs)
        for setting in all_settings():
            if not setting.in_form:
                continue
            if setting.capability and (service is None or not can(service, setting.capability)):
                continue
            self.fields[setting.name] = setting_field(setting)

    def clean(self):
        data = super().clean()
        for problem in problems(data):
            if problem.setting in self.fields and problem.setting not in self.errors:
                self.add_error(problem.setting, problem.message)
        return data


class CloudRunSettingsForm(forms.ModelForm):
    """Staff: the platform's or a team's Cloud Run settings. The key is taken
    as an uploaded file or pasted, stored encrypted, and never shown again."""

    key_file = forms.FileField(label=_("Service-account key (JSON file)"), required=False)
    key_text = forms.CharField(
        label=_("…or paste the key"), required=False, widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text=_("Stored encrypted; only the account's email is shown after."),
    )

    class Meta:
        from .models import TeamCloudRunSettings

        model = TeamCloudRunSettings
        fields = ["project", "region", "repository", "bucket", "service_account", "build_service_account", "credentials"]
        labels = {
            "project": _("Project ID"), "service_account": _("Services run as (service account email)"),
            "build_service_account": _("Builds run as (service account email)"), "credentials": _("Credentials"),
        }

    # The platform's settings name no accounts: each team runs as its own.
    PLATFORM_FIELDS = ["project", "region", "repository", "bucket", "credentials"]

    @classmethod
    def fields_for(cls, model) -> list[str]:
        return cls.Meta.fields if model is cls.Meta.model else cls.PLATFORM_FIELDS

    def __init__(self, *args, inherited: dict | None = None, **kwargs):
        from hakobune.runtime.cloud_run.tenants import BUILD, RUNTIME, account_email

        super().__init__(*args, **kwargs)
        # What an empty field means: the value of the layer above.
        inherited = dict(inherited or {})
        if self.instance.project and self.instance.project != inherited.get("project"):
            # Another project: the defaults are that project's, not the ones above.
            inherited.update(bucket=f"{self.instance.project}_cloudbuild")
        team = getattr(self.instance, "team", None)
        project = self.instance.project or inherited.get("project")
        if team is not None and project:
            inherited.update(service_account=account_email(RUNTIME, team.name, project),
                             build_service_account=account_email(BUILD, team.name, project))
        for name, value in inherited.items():
            if name in self.fields and value and isinstance(value, str):
                self.fields[name].widget.attrs["placeholder"] = gettext("empty: %(value)s") % {"value": value}
        if self.instance.key_email:
            self.fields["key_file"].help_text = gettext("Stored now: a key of %(email)s. Give another to replace it.") % {"email": self.instance.key_email}

    def clean(self):
        from .cloud_settings import read_service_account_key

        data = super().clean()
        upload = data.get("key_file")
        text = data.get("key_text", "").strip()
        if upload:
            if upload.size > 64 * 1024:
                self.add_error("key_file", gettext("A service-account key is a few KB of JSON; this file is something else."))
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
            self.add_error("key_file", gettext("Give the service-account key to use."))
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


GUIDED_SOURCE_CHOICES = [("sample", _("A sample app")), *SOURCE_CHOICES]


class GuidedSourceForm(NewServiceForm):
    """The guided first deploy's first step: a name and a source, which may
    be one of the built-in sample apps."""

    sample = forms.ChoiceField(label=_("Sample app"), required=False, widget=forms.RadioSelect)

    def __init__(self, *args, samples=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source_kind"].choices = GUIDED_SOURCE_CHOICES
        self.fields["source_kind"].initial = "sample"
        self.fields["sample"].choices = [(s.name, s.title) for s in samples]
        self.fields["sample"].initial = samples[0].name if samples else ""
        self.fields.pop("target", None)

    def clean_source_kind(self):
        return self.cleaned_data.get("source_kind") or "sample"

    def clean(self):
        if self.cleaned_data.get("source_kind") != "sample":
            return super().clean()
        data = forms.Form.clean(self)
        if not data.get("sample"):
            self.add_error("sample", gettext("Choose one of the samples."))
        return data
