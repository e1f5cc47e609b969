from django.db import models

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
