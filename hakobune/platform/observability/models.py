from django.db import models
from django.utils import timezone

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
