"""Add-ons: a team's PostgreSQL or Redis on the local runtime, and which of
the team's services use it (hakobune/platform/addons/actions.py)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from hakobune.platform.accounts.models import Team, dns_label_validator
from hakobune.platform.crypto import decrypt
from hakobune.platform.services.models import Service


class Kind(models.TextChoices):
    POSTGRES = "postgres", "PostgreSQL"
    REDIS = "redis", "Redis"


# The variable each kind gives the services it is attached to.
ENV_KEYS = {Kind.POSTGRES: "DATABASE_URL", Kind.REDIS: "REDIS_URL"}
PORTS = {Kind.POSTGRES: 5432, Kind.REDIS: 6379}
MASK = "••••••"


def default_backup_schedule() -> str:
    return settings.BACKUP_SCHEDULE


def default_backup_retention() -> int:
    return settings.BACKUP_RETENTION


class AddOn(models.Model):
    class Status(models.TextChoices):
        PROVISIONING = "provisioning", _("starting")
        READY = "ready", _("ready")
        FAILED = "failed", _("failed")
        DELETING = "deleting", _("deleting")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="addons")
    name = models.CharField(max_length=30, validators=[dns_label_validator])
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROVISIONING)
    # Why it failed, in a sentence; empty otherwise.
    status_detail = models.TextField(blank=True)
    image = models.CharField(max_length=200, blank=True)
    version = models.CharField(max_length=200, blank=True)
    container_id = models.CharField(max_length=80, blank=True)
    volume = models.CharField(max_length=120)
    password_encrypted = models.TextField(editable=False)
    database = models.CharField(max_length=63, blank=True)
    cpu = models.DecimalField(max_digits=5, decimal_places=2)
    memory_mb = models.PositiveIntegerField()
    # An external database (a Cloud SQL instance, a managed Redis…) that an
    # administrator entered for the team: its whole URL, encrypted. Hakobune
    # runs nothing for it; it is how services on Cloud Run get a database.
    external_url_encrypted = models.TextField(blank=True, editable=False)
    services = models.ManyToManyField(Service, blank=True, related_name="addons")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Its backups (hakobune/platform/addons/backups.py): a cron schedule in UTC
    # (empty: none scheduled) and how many verified backups are kept.
    backup_schedule = models.CharField(max_length=100, blank=True, default=default_backup_schedule)
    backup_retention = models.PositiveSmallIntegerField(default=default_backup_retention)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="addon_name_unique_per_team")]
        ordering = ["name"]

    def __str__(self):
        return f"{self.team.name}/{self.name}"

    @property
    def env_key(self) -> str:
        return ENV_KEYS[self.kind]

    @property
    def port(self) -> int:
        return PORTS[self.kind]

    @property
    def external(self) -> bool:
        return bool(self.external_url_encrypted)

    def url(self, *, masked: bool = True) -> str:
        """How the team's services reach it: the password masked, unless the
        runtime is given the URL (`masked=False`)."""
        if self.external:
            url = decrypt(self.external_url_encrypted)
            return masked_url(url) if masked else url
        password = MASK if masked else decrypt(self.password_encrypted)
        if self.kind == Kind.POSTGRES:
            return f"postgres://app:{password}@{self.name}:{self.port}/{self.database}"
        return f"redis://:{password}@{self.name}:{self.port}/0"


def masked_url(url: str) -> str:
    """The URL with its password (a lone name before the host, which may be a
    token, too) and the values of its query masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        user, has_password, _ = credentials.partition(":")
        netloc = f"{user}:{MASK}@{host}" if has_password else f"{MASK}@{host}"
    query = "&".join(f"{pair.split('=', 1)[0]}={MASK}" if "=" in pair else pair
                     for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def attached_env_of(service: Service) -> dict[str, str]:
    """The URLs of the add-ons attached to the service, with their passwords:
    for the runtime only, never stored as the service's variables."""
    return {addon.env_key: addon.url(masked=False)
            for addon in AddOn.objects.filter(services=service).exclude(status=AddOn.Status.DELETING)}


class Backup(models.Model):
    """One backup of an add-on: a dump stored in the data directory or a
    bucket, `verified` once a restore of the stored file into a scratch
    container counted what the add-on held when it was dumped."""

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        VERIFIED = "verified", _("verified")
        FAILED = "failed", _("failed")

    class Step(models.TextChoices):
        # Accepted, waiting for a worker (queued again from here if the queue was lost).
        QUEUED = "queued", _("waiting for a worker")
        DUMPING = "dumping", _("dumping")
        STORING = "storing", _("storing")
        CHECKING = "checking", _("checking by a restore")
        DONE = "done", _("done")

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", _("scheduled")
        ON_DEMAND = "on_demand", _("on demand")

    addon = models.ForeignKey(AddOn, on_delete=models.CASCADE, related_name="backups")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    step = models.CharField(max_length=16, choices=Step.choices, default=Step.QUEUED)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.ON_DEMAND)
    # The schedule's tick it was made for (scheduled ones only): one backup per tick.
    scheduled_for = models.DateTimeField(null=True, blank=True)
    # Where it is: "local" (BACKUP_DIR) or "s3" (the bucket), and its name there.
    storage = models.CharField(max_length=16)
    bucket = models.CharField(max_length=100, blank=True)
    location = models.CharField(max_length=300, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    # What the add-on held when it was dumped: {"public.items": 3} or {"keys": 5}.
    counts = models.JSONField(default=dict, blank=True)
    # What the restore into a scratch container found, and whether it matched.
    checked = models.JSONField(default=dict, blank=True)
    # Why it failed, in a sentence; empty otherwise.
    detail = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["addon", "scheduled_for"], condition=Q(scheduled_for__isnull=False),
                                    name="one_backup_per_schedule_tick"),
        ]
        indexes = [models.Index(fields=["status", "step"])]

    def __str__(self):
        return f"{self.addon} backup {self.id}"


class Restore(models.Model):
    """A backup restored into its add-on (after its owner typed the add-on's
    name) or into a new add-on made for it."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("waiting")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("restored")
        FAILED = "failed", _("failed")

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="restores")
    # The add-on restored into.
    addon = models.ForeignKey(AddOn, on_delete=models.CASCADE, related_name="restores")
    into_new = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    counts = models.JSONField(default=dict, blank=True)
    detail = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.backup} into {self.addon}"
