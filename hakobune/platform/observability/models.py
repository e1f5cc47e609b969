from django.conf import settings
from django.db import models
from django.utils import timezone

from hakobune.platform.accounts.models import Team
from hakobune.platform.services.models import Service


class MetricPoint(models.Model):
    """One reading of one instance of a service, as its runtime reported it
    (cpu_percent, memory_bytes, memory_limit_bytes, and what a backend adds)."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="metric_points")
    timestamp = models.DateTimeField()
    name = models.CharField(max_length=64)
    value = models.FloatField()
    instance = models.CharField(max_length=200, blank=True)
    # The timestamp in whole seconds, so that the database averages per step.
    epoch = models.BigIntegerField(default=0)
    # 0: one reading. Older readings are replaced by their average over this
    # many seconds (starting at `timestamp`), which keeps long ranges quick.
    period = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["timestamp"]
        indexes = [models.Index(fields=["service", "name", "timestamp"]), models.Index(fields=["service", "timestamp"])]

    def save(self, *args, **kwargs):
        self.epoch = int(self.timestamp.timestamp())
        super().save(*args, **kwargs)


class LogLine(models.Model):
    """One line a service's instance printed, as the log collector stored it
    (in the "logs" database: hakobune/platform/dbrouters.py). The service and
    team are plain ids, not foreign keys: the rows live in another database,
    and outlive the containers, releases and even the service they came from
    until the retention window or the team's cap takes them."""

    class Stream(models.TextChoices):
        STDOUT = "stdout", "stdout"
        STDERR = "stderr", "stderr"
        # Said by Hakobune about the log itself: "12,345 lines dropped in 10 s".
        PLATFORM = "platform", "Hakobune"

    service_id = models.BigIntegerField()
    team_id = models.BigIntegerField()
    timestamp = models.DateTimeField()
    instance = models.CharField(max_length=200)
    process = models.CharField(max_length=64, default="web")
    release = models.PositiveIntegerField(default=0)  # the release's number (v3: 3)
    stream = models.CharField(max_length=8, choices=Stream.choices)
    text = models.TextField()
    # Bytes of text, summed for the team's cap.
    size = models.PositiveIntegerField(default=0)
    # On a PLATFORM line saying a drop: how many lines were dropped.
    dropped = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        # Every read walks (service_id, id) from a known id, a time filter
        # too (within the window logstore.tail reads); an index by service
        # and time cost the collector a quarter of its writing.
        indexes = [
            models.Index(fields=["service_id", "id"]),
            models.Index(fields=["team_id", "id"]),
            models.Index(fields=["timestamp"]),
        ]

    @property
    def shown_time(self) -> str:
        """The line's time in the reader's time zone, as the log card shows
        it: formatted here, as the `date` filter's formatting, hundreds of
        lines a page, was most of the card's CPU time."""
        return timezone.localtime(self.timestamp).strftime("%Y-%m-%d %H:%M:%S")


class LogCursor(models.Model):
    """How far the collector has stored one source: a container's output (up
    to its last line's time in nanoseconds), or the router's access log (up to
    a byte offset). Saved in the same transaction as the lines, so a restarted
    collector resumes after the last stored line: none twice, none lost."""

    source = models.CharField(max_length=200, unique=True)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class Event(models.Model):
    """One thing that happened to a service or a team, and who did it: a
    person (through the portal, or the API with one of their tokens) or
    Hakobune itself (the pipeline, the reconciler, the scheduler). The
    service's timeline and the team's audit log are these rows
    (observability/events.py records and words them). They outlive the
    service, the team and the person they name: the names are kept beside
    the links, which are cleared when those go."""

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        SUCCESS = "success", "Success"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    team_name = models.CharField(max_length=30)
    # Empty for what concerns the whole team (its members, its quota).
    service = models.ForeignKey(Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    service_name = models.CharField(max_length=30, blank=True)
    kind = models.CharField(max_length=40)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.INFO)
    # Empty: Hakobune itself.
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_label = models.CharField(max_length=150)
    # The name of the API token the person acted with, when they did.
    actor_token = models.CharField(max_length=100, blank=True)
    # What the sentence of its kind needs (numbers, names, keys): never a
    # secret value.
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Set where one thing may be seen more than once (an instance's exit, by
    # two collectors or one resuming): the second is not recorded.
    dedup_key = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["service", "id"]),
            models.Index(fields=["team", "id"]),
            models.Index(fields=["created_at"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["dedup_key"], condition=~models.Q(dedup_key=""), name="event_seen_once"),
        ]

    def __str__(self):
        where = f"{self.team_name}/{self.service_name}" if self.service_name else self.team_name
        return f"{where} {self.kind} by {self.actor_label}"


class LogDrain(models.Model):
    """Where a team's runtime logs are sent as they are stored (one drain a
    team; platform/observability/drains.py): an https:// endpoint taking JSON
    lines, or a syslog endpoint (RFC 5424 over TCP, with TLS). The address may
    hold a secret (a token in its query, a password), so it is kept
    encrypted and shown without it. The rest is the shipper's state: its
    position in the team's lines, what it sent and dropped, and its last
    success and error, which the team's page shows."""

    class Kind(models.TextChoices):
        HTTPS = "https", "HTTPS (JSON lines)"
        SYSLOG = "syslog", "Syslog (RFC 5424)"

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="log_drain")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    url_encrypted = models.TextField()
    # The address without its user, password, query or fragment.
    url_shown = models.CharField(max_length=500)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The id of the last of the team's LogLines sent (or skipped): the next
    # batch is the team's lines after it.
    position = models.BigIntegerField(default=0)
    shipped_lines = models.BigIntegerField(default=0)
    dropped_lines = models.BigIntegerField(default=0)
    last_dropped_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    # The last failure as a diagnosis (platform/diagnoses.py, "drain.*"), put
    # into words when shown; cleared by the next success.
    last_error_rule = models.CharField(max_length=64, blank=True)
    last_error_params = models.JSONField(default=dict, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # Failures in a row: the next attempt waits 2 ** failures seconds (at most
    # LOG_DRAIN_MAX_BACKOFF).
    failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A shipper's lease, so that two collectors (one per host) never send
    # the same lines at once.
    leased_until = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.team_id}: {self.url_shown}"

    @property
    def last_error_text(self) -> str:
        from hakobune.platform.diagnoses import render

        return render(self.last_error_rule, self.last_error_params) if self.last_error_rule else ""
