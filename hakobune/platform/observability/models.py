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
        indexes = [
            models.Index(fields=["service_id", "id"]),
            models.Index(fields=["service_id", "timestamp"]),
            models.Index(fields=["team_id", "id"]),
            models.Index(fields=["timestamp"]),
        ]


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
