import secrets
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from django.utils.functional import cached_property

from hakobune.platform.accounts.models import Team, dns_label_validator
from hakobune.platform.builds.status import BuildStatus
from hakobune.runtime import release_config
from hakobune.runtime.cloud_run.tenants import BUILD, RUNTIME, account_id, derived_by, in_derived_scheme, is_shared_account


def default_cpu():
    return Decimal(str(settings.DEFAULT_SERVICE_CPU))


def default_memory_mb():
    return settings.DEFAULT_SERVICE_MEMORY_MB


def default_port():
    return settings.DEFAULT_SERVICE_PORT


def default_target():
    return settings.DEFAULT_RUNTIME_BACKEND


def new_webhook_secret():
    return secrets.token_hex(24)


class DesiredState(models.TextChoices):
    """What a service's team asked for; the reconciler makes the runtime match it."""

    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    SLEEPING = "sleeping", "Asleep"
    DELETED = "deleted", "Deleted"


class SourceKind(models.TextChoices):
    ARCHIVE = "archive", "Archive upload"
    GIT = "git", "Git repository"


# The choices as declared with the settings; importable from here as before.
CLOUD_BUILDERS = release_config.CLOUD_BUILDERS
INGRESS_CHOICES = release_config.INGRESS_CHOICES


def validators_for(name: str) -> list:
    """The bounds of a declared setting as its column's validators."""
    setting = release_config.get_setting(name)
    exact = (lambda v: Decimal(str(v))) if setting.digits else (lambda v: v)
    validators = []
    if setting.min is not None:
        validators.append(MinValueValidator(exact(setting.min)))
    if setting.max is not None:
        validators.append(MaxValueValidator(exact(setting.max)))
    return validators


def _max_length(name: str) -> int:
    return release_config.get_setting(name).max_length


class Service(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="services")
    name = models.CharField(max_length=30, validators=[dns_label_validator])
    target = models.CharField(max_length=32, default=default_target, help_text="Which runtime backend runs it.")
    cpu = models.DecimalField(
        max_digits=4,
        decimal_places=2,
        default=default_cpu,
        validators=validators_for("cpu"),
        help_text="CPU cores per instance.",
    )
    memory_mb = models.PositiveIntegerField(
        default=default_memory_mb,
        validators=validators_for("memory_mb"),
        help_text="Memory per instance, in MiB.",
    )
    port = models.PositiveIntegerField(
        default=default_port,
        validators=validators_for("port"),
        help_text="The port your app listens on; it is also given to it as $PORT.",
    )
    instances = models.PositiveSmallIntegerField(default=1, validators=validators_for("instances"))
    # For runtimes that scale by themselves (Cloud Run); the local runtime runs
    # `instances`. Empty: the runtime's default.
    min_instances = models.PositiveSmallIntegerField(null=True, blank=True, validators=validators_for("min_instances"))
    max_instances = models.PositiveSmallIntegerField(null=True, blank=True, validators=validators_for("max_instances"))
    # For runtimes that scale on requests (Cloud Run); empty: the runtime's default.
    concurrency = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=validators_for("concurrency"),
        help_text="Requests one instance serves at once before another starts.",
    )
    request_timeout = models.PositiveIntegerField(
        null=True, blank=True, validators=validators_for("request_timeout"),
        help_text="Seconds a request may take before it is cut off.",
    )
    ingress = models.CharField(max_length=40, blank=True, choices=INGRESS_CHOICES, help_text="Where requests may come from.")
    # A private service has no public address: on the local runtime only its
    # team's services reach it, at http://<name>:<port> on the team network.
    public = models.BooleanField(default=True)
    health_check_path = models.CharField(max_length=_max_length("health_check_path"), default="/")
    # Over what was detected and what the app's hakobune.toml says; empty: theirs.
    start_command = models.CharField(max_length=_max_length("start_command"), blank=True)
    build_command = models.CharField(max_length=_max_length("build_command"), blank=True)
    source_kind = models.CharField(max_length=16, choices=SourceKind.choices, default=SourceKind.ARCHIVE)
    git_url = models.CharField(max_length=500, blank=True, help_text="https address of the repository, without credentials.")
    git_ref = models.CharField(max_length=255, blank=True, default="main", help_text="Branch, tag or commit to deploy.")
    git_token_encrypted = models.TextField(blank=True, editable=False)
    git_submodules = models.BooleanField(default=False)
    # How a backend that builds images itself (Cloud Build) builds this one;
    # empty: the platform's default (CLOUDRUN_BUILDER).
    cloud_builder = models.CharField(
        max_length=16, blank=True, choices=list(release_config.get_setting("cloud_builder").choices),
    )
    source_subdir = models.CharField(
        max_length=255, blank=True, help_text="The app's folder inside the source, for monorepos (e.g. services/api)."
    )
    webhook_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    webhook_secret = models.CharField(max_length=64, default=new_webhook_secret, editable=False)
    live_release = models.ForeignKey(
        "services.Release", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What the owner asked for; the reconciler makes the runtime match it.
    desired_state = models.CharField(max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING)
    # Scale to zero, like Cloud Run: after idle_minutes without a request the
    # instances stop; the next request wakes the service.
    scale_to_zero = models.BooleanField(default=False)
    idle_minutes = models.PositiveIntegerField(default=15, validators=[MinValueValidator(1), MaxValueValidator(1440)])
    last_request_at = models.DateTimeField(null=True, blank=True)
    # The declared settings (runtime/release_config.py) that have no column
    # of their own, by name; read as attributes like the others.
    extra_settings = models.JSONField(default=dict, blank=True)
    # Process types besides web (the live build's Procfile and hakobune.toml)
    # and their sizes: {"worker": {"instances": 2}}; a size not given is web's.
    processes = models.JSONField(default=dict, blank=True)
    # Whether the app has a web process (a Procfile of workers only has none:
    # nothing is routed to it, and its web instances are not counted).
    serves_web = models.BooleanField(default=True)
    # Something the platform must tell the service's team, shown on its page
    # until an owner dismisses it (an old address that went to another service).
    notice = models.TextField(blank=True)
    # Why the router left its route out, when it did (the reconciler's last
    # look; empty: routed). The other services are served all the same.
    route_problem = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="service_name_unique_per_team")]

    def __str__(self):
        return f"{self.team.name}/{self.name}"

    def __getattr__(self, name):
        # Only reached when nothing else has the name: a declared setting
        # without a column is read from extra_settings.
        if name.startswith("_") or not release_config.is_setting(name):
            raise AttributeError(name)
        extra = self.__dict__.get("extra_settings") or {}
        return release_config.get_setting(name).coerce(extra.get(name))

    @classmethod
    def has_column(cls, name: str) -> bool:
        """Whether a declared setting is kept in a column of its own (else in extra_settings)."""
        return any(field.name == name for field in cls._meta.concrete_fields)

    def clean(self):
        errors = {}
        for name, value in (self.extra_settings or {}).items():
            if release_config.is_setting(name) and not self.has_column(name):
                try:
                    release_config.get_setting(name).validate(value)
                except release_config.SettingError as exc:
                    errors[name] = exc.message
        values = {setting.name: getattr(self, setting.name) for setting in release_config.all_settings()}
        for problem in release_config.problems(values):
            errors.setdefault(problem.setting, problem.message)
        if errors:
            raise ValidationError(errors)

    @cached_property
    def latest_build(self):
        """The newest build (deploy), or None. Lists of services fill it for
        all of them in one query with with_latest_builds()."""
        return self.builds.first()

    def status_word(self, latest_build=None) -> str:
        """One word for the service, as the dashboard and the API show it."""
        if latest_build and latest_build.status == BuildStatus.REVIEWING:
            return "in review"
        if latest_build and latest_build.in_progress:
            return "deploying"
        if self.live_release_id and self.is_stopped:
            return "stopped"
        if self.live_release_id and self.is_asleep:
            return "asleep"
        if self.live_release_id:
            return "live"
        if latest_build and latest_build.status == BuildStatus.FAILED:
            return "failed"
        return "new"

    @property
    def is_stopped(self) -> bool:
        return self.desired_state == DesiredState.STOPPED

    @property
    def is_asleep(self) -> bool:
        return self.desired_state == DesiredState.SLEEPING

    @property
    def hostname(self) -> str:
        """The service's own address, `<service>.<team>.<base>`: names have no
        dots, so no two services of any teams can have the same one (and the
        Domain table's unique hostname holds it)."""
        return platform_hostname(self.name, self.team.name)

    @property
    def url(self) -> str:
        # Backends that give each service its own address (Cloud Run) keep it
        # in the live release's runtime state.
        if self.live_release_id and (self.live_release.runtime_state or {}).get("url"):
            return self.live_release.runtime_state["url"]
        port = settings.ROUTER_HTTPS_PORT if settings.ROUTER_SCHEME == "https" else settings.ROUTER_PORT
        default_port = {"http": 80, "https": 443}.get(settings.ROUTER_SCHEME)
        suffix = "" if port == default_port else f":{port}"
        return f"{settings.ROUTER_SCHEME}://{self.hostname}{suffix}/"

    @property
    def aliases(self) -> tuple[str, ...]:
        """Its custom domains that are verified: only these are routed."""
        return tuple(
            domain.hostname for domain in self.domains.all()
            if domain.kind == Domain.Kind.CUSTOM and domain.verified_at is not None
        )

    @property
    def redirects(self) -> tuple[str, ...]:
        """Its addresses of before `<service>.<team>`, which redirect to the
        new one until they expire (LEGACY_ADDRESS_DAYS)."""
        return tuple(domain.hostname for domain in self.domains.all() if domain.is_live_legacy)

    @property
    def custom_domains(self) -> list:
        return [domain for domain in self.domains.all() if domain.kind == Domain.Kind.CUSTOM]

    @property
    def has_git_token(self) -> bool:
        return bool(self.git_token_encrypted)

    @property
    def git_branch(self) -> str:
        """The branch a push must be to for auto-deploy."""
        return self.git_ref.removeprefix("refs/heads/")


# A name a shell and a container take: letters, digits, underscores, not
# starting with a digit. PORT is Hakobune's own: the app is told its port in it.
env_key_validator = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$",
    "Use letters, digits and underscores, and do not start with a digit (like DATABASE_URL).",
)
RESERVED_ENV_KEYS = frozenset({"PORT"})


def validate_env_key(key: str) -> None:
    env_key_validator(key)
    if key.upper() in RESERVED_ENV_KEYS:
        raise ValidationError(f"{key} is set by Hakobune (your app listens on $PORT); change the service's port instead.")


def with_latest_builds(services) -> list:
    """The services (a queryset or a list) as a list, each with its
    latest_build read in one query for all, instead of one query each."""
    services = list(services)
    if not services:
        return services
    Build = Service._meta.get_field("builds").related_model
    newest = Build.objects.filter(service=OuterRef("pk")).order_by("-number").values("pk")[:1]
    latest = Build.objects.filter(
        pk__in=Subquery(Service.objects.filter(pk__in=[service.pk for service in services]).values(newest_id=Subquery(newest)))
    )
    by_service = {build.service_id: build for build in latest}
    for service in services:
        service.__dict__["latest_build"] = by_service.get(service.pk)
    return services


class EnvVar(models.Model):
    """One environment variable of a service; its value is encrypted at rest
    and never shown again after it is set."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="env_vars")
    key = models.CharField(max_length=128, validators=[validate_env_key])
    value_encrypted = models.TextField(blank=True)
    # Instead of a value: a secret the runtime reads from its secret store
    # ("name:version" in Secret Manager), for backends that can.
    secret_ref = models.CharField(max_length=400, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["service", "key"], name="env_key_unique_per_service")]

    def __str__(self):
        return f"{self.service} {self.key}"


class WebhookDelivery(models.Model):
    """One push event received for a service, accepted or refused."""

    class Outcome(models.TextChoices):
        DEPLOYED = "deployed", "Deploy started"
        IGNORED = "ignored", "Ignored"
        REFUSED = "refused", "Refused"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="webhook_deliveries")
    received_at = models.DateTimeField(auto_now_add=True)
    provider = models.CharField(max_length=16, blank=True)
    event = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.CharField(max_length=500)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    build = models.ForeignKey("builds.Build", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-received_at"]


class Release(models.Model):
    """An immutable revision of a service: one image with one configuration.
    Only its status and the runtime's bookkeeping change after creation."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DEPLOYING = "deploying", "Deploying"
        LIVE = "live", "Live"
        SUPERSEDED = "superseded", "Superseded"
        FAILED = "failed", "Failed"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="releases")
    build = models.ForeignKey("builds.Build", on_delete=models.PROTECT, related_name="releases")
    number = models.PositiveIntegerField()
    description = models.CharField(max_length=200, blank=True, help_text="Why it exists: a deploy, a rollback, a scale.")
    image = models.CharField(max_length=255)
    config = models.JSONField(default=dict, help_text="port, cpu, memory_mb, instances, health_check_path")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DEPLOYING)
    # As a build's: the English words for the API, the diagnosis for the portal.
    failure_reason = models.TextField(blank=True)
    failure_rule = models.CharField(max_length=64, blank=True)
    failure_params = models.JSONField(default=dict, blank=True)
    runtime_state = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    live_at = models.DateTimeField(null=True, blank=True)
    # A release made without a build is started by a worker (start_release)
    # under a lease, as a build's step is (builds/sweeper.py): claimed_at is
    # when a worker took it (None while it waits, and for a build's own
    # release, which the build's deploy step holds); heartbeat_at is renewed
    # while the worker runs and set when it is queued; start_resumes counts
    # the starts taken back from a worker that died.
    claimed_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    start_resumes = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["service", "number"], name="release_number_unique_per_service")]

    def __str__(self):
        return f"{self.service} v{self.number}"

    @property
    def failure_text(self) -> str:
        """Why it did not start, in the reader's language, with the app's last lines."""
        from hakobune.platform.diagnoses import render

        if not self.failure_rule:
            return self.failure_reason
        tail = self.failure_params.get("tail", "")
        return render(self.failure_rule, self.failure_params) + (f"\n{tail}" if tail else "")

    @property
    def is_superseded(self) -> bool:
        return self.status == Release.Status.SUPERSEDED

    @property
    def went_live(self) -> bool:
        """Whether it served at some time: it is live, or a newer one replaced it."""
        return self.status in (Release.Status.LIVE, Release.Status.SUPERSEDED)


hostname_validator = RegexValidator(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    "Give a full domain name, like www.example.com (lowercase letters, digits, hyphens and dots).",
)


class JobRun(models.Model):
    """One run of a scheduled job (hakobune.toml's [[jobs]]): a one-off
    container of the live release, started by the scheduler for one tick of
    the job's schedule. At most one run of a job is running at a time (the
    constraint); a tick that finds one running is recorded as skipped."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="job_runs")
    release = models.ForeignKey(Release, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    job = models.CharField(max_length=40)
    command = models.CharField(max_length=500)
    schedule = models.CharField(max_length=100)
    # The tick of the schedule it runs for (UTC).
    scheduled_for = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    exit_code = models.IntegerField(null=True, blank=True)
    # Why it failed or was skipped, in words.
    detail = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Its last lines of output.
    log = models.TextField(blank=True)
    # What the runtime needs to find its container again.
    handle = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "job", "scheduled_for"], name="one_run_per_job_tick"),
            models.UniqueConstraint(fields=["service", "job"], condition=models.Q(status="running"),
                                    name="one_running_run_per_job"),
        ]

    def __str__(self):
        return f"{self.service} {self.job} at {self.scheduled_for:%Y-%m-%d %H:%M}"


class OneOffRun(models.Model):
    """A command a person ran in a one-off container of the live release
    (`hakobune run -- CMD`), attached to their terminal: who, what, when, and
    how it ended."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        EXITED = "exited", "Exited"
        # The terminal went away first; the container was stopped.
        DISCONNECTED = "disconnected", "Disconnected"
        TIMED_OUT = "timed_out", "Timed out"
        FAILED = "failed", "Failed to start"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="one_off_runs")
    release = models.ForeignKey(Release, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    command = models.CharField(max_length=1000)
    tty = models.BooleanField(default=False)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    # Kept when the account is deleted: the list says who ran it.
    started_by_name = models.CharField(max_length=150)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    exit_code = models.IntegerField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    container_id = models.CharField(max_length=80, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["service", "-started_at"])]

    def __str__(self):
        return f"{self.service} run {self.id}: {self.command[:40]}"


def platform_hostname(service: str, team: str) -> str:
    return f"{service}.{team}.{settings.BASE_DOMAIN}"


def legacy_hostname(service: str, team: str) -> str:
    """The address scheme before `<service>.<team>`, which could collide:
    service my-app of team prod and service my of team app-prod."""
    return f"{service}-{team}.{settings.BASE_DOMAIN}"


class Domain(models.Model):
    """Every hostname a service answers at, in one table whose unique
    hostname means that no two services, of any teams, share one: its own
    address, its custom domains (routed once verified), and its old address
    (redirected to the new one for a while)."""

    class Kind(models.TextChoices):
        PLATFORM = "platform", "Its own address"
        CUSTOM = "custom", "A custom domain"
        LEGACY = "legacy", "An old address that redirects"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="domains")
    hostname = models.CharField(max_length=253, unique=True, validators=[hostname_validator])
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CUSTOM)
    # Custom domains: the TXT record that proves the team holds the domain.
    verification_token = models.CharField(max_length=64, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self):
        return self.hostname

    @property
    def is_live_legacy(self) -> bool:
        if self.kind != Domain.Kind.LEGACY or settings.LEGACY_ADDRESS_DAYS <= 0:
            return False
        return timezone.now() < self.created_at + timedelta(days=settings.LEGACY_ADDRESS_DAYS)

    @property
    def txt_name(self) -> str:
        return f"{VERIFICATION_LABEL}.{self.hostname}"

    @property
    def txt_value(self) -> str:
        return f"hakobune-verify={self.verification_token}"


VERIFICATION_LABEL = "_hakobune"


project_id_validator = RegexValidator(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
    "A Google Cloud project ID: 6 to 30 lowercase letters, digits and hyphens, like my-project-123.",
)
region_validator = RegexValidator(r"^[a-z]+-[a-z]+[0-9]+$", "A Cloud Run region, like europe-west1 or us-central1.")


class CloudRunSettingsBase(models.Model):
    """Where Cloud Run services go and as whom. Empty fields keep what the layer
    above says: a team's settings over the platform's, the platform's over the
    CLOUDRUN_* environment variables."""

    class Credentials(models.TextChoices):
        INHERIT = "", "As above"
        KEY = "key", "A service-account key stored here"
        HOST = "host", "This host's application default credentials"

    project = models.CharField(max_length=30, blank=True, validators=[project_id_validator])
    region = models.CharField(max_length=40, blank=True, validators=[region_validator])
    repository = models.CharField(
        max_length=63, blank=True, help_text="The Artifact Registry Docker repository in that region."
    )
    bucket = models.CharField(max_length=222, blank=True, help_text="For sources and build logs; empty: <project>_cloudbuild.")
    credentials = models.CharField(max_length=8, blank=True, choices=Credentials.choices)
    # The key's JSON, encrypted; only its account's email is ever shown.
    key_encrypted = models.TextField(blank=True, editable=False)
    key_email = models.CharField(max_length=200, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    OVERRIDABLE = ("project", "region", "repository", "bucket")

    class Meta:
        abstract = True

    def overrides(self) -> dict:
        return {name: getattr(self, name) for name in self.OVERRIDABLE if getattr(self, name)}

    def team_accounts(self) -> dict:
        """The accounts staff named for the team, by kind ("runtime", "build")."""
        return {}


class CloudRunDefaults(CloudRunSettingsBase):
    """The platform's own Cloud Run settings, set by staff in the portal (one row)."""

    @classmethod
    def load(cls) -> "CloudRunDefaults":
        return cls.objects.filter(pk=1).first() or cls(pk=1)

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)

    def __str__(self):
        return "Cloud Run settings of the platform"


class TeamCloudRunSettings(CloudRunSettingsBase):
    """A team's Cloud Run settings, set by staff: its own project, say, and the
    key of a service account in it; and the accounts its services and builds
    run as when not the ones derived from its name. The platform has no such
    accounts of its own: one identity for every team is what these prevent."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="cloud_run_settings")
    service_account = models.CharField(
        max_length=200, blank=True,
        help_text="The account the team's services run as; empty: hakobune-run-<team>@<project>.iam.gserviceaccount.com.",
    )
    build_service_account = models.CharField(
        max_length=200, blank=True,
        help_text="The account the team's Cloud Builds run as; empty: hakobune-build-<team>@<project>.iam.gserviceaccount.com.",
    )

    def team_accounts(self) -> dict:
        accounts = {"runtime": self.service_account.strip(), "build": self.build_service_account.strip()}
        return {kind: email for kind, email in accounts.items() if email}

    def clean(self):
        """Never an account every workload of a project shares, nor another
        team's: the portal's form and the admin site both check here."""
        super().clean()
        self.service_account = self.service_account.strip()
        self.build_service_account = self.build_service_account.strip()
        problems = {}
        for field, kind in (("service_account", "runtime"), ("build_service_account", "build")):
            email = getattr(self, field)
            problem = cloud_run_account_problem(email, team=self.team.name, kind=kind) if email and self.team_id else ""
            if problem:
                problems[field] = problem
        if problems:
            raise ValidationError(problems)

    def __str__(self):
        return f"Cloud Run settings of {self.team}"


def cloud_run_account_problem(email: str, *, team: str, kind: str) -> str:
    """Why staff may not name `email` as `team`'s runtime or build account, or
    "": never an account every workload of a project shares, another team's
    (named for it or derived from its name), nor anything but a service
    account's email."""
    email = email.strip()
    what = "its services" if kind == RUNTIME else "its builds"
    if "@" not in email or not email.endswith(".gserviceaccount.com"):
        return f"Give the email of a service account, like name@project.iam.gserviceaccount.com, for {what} to run as."
    if is_shared_account(email):
        return (
            f"{email} is one of the project's default accounts, which everything in the project may share; give team "
            f"{team} an account of its own (empty: Hakobune's name for it)."
        )
    others = Team.objects.exclude(name=team).values_list("name", flat=True)
    derived = derived_by(email, others)
    if derived:
        return f"{email} is team {derived[0]}'s {derived[1]} account; each team needs its own."
    own = {account_id(RUNTIME, team), account_id(BUILD, team)}
    if in_derived_scheme(email) and email.partition("@")[0].lower() not in own:
        return (
            f"Names like {email.partition('@')[0]} are kept for the accounts Hakobune names after teams (a team made "
            "later may get it); give the account another name."
        )
    taken = (
        TeamCloudRunSettings.objects.exclude(team__name=team)
        .filter(models.Q(service_account__iexact=email) | models.Q(build_service_account__iexact=email))
        .select_related("team").first()
    )
    if taken is not None:
        return f"{email} is already team {taken.team.name}'s; each team needs its own."
    return ""
