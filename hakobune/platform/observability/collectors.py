"""The metrics collector: every little while, each live service's backend is
asked for its instances' current readings, which are kept as history for a
while; charts and the API read that history."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.models import Release, Service
from hakobune.runtime.base import RuntimeBackendError, ServiceRef

from .models import MetricPoint

logger = logging.getLogger(__name__)


def collect_all() -> int:
    """Stores one reading of every running service; returns the points kept."""
    kept = 0
    services = Service.objects.filter(desired_state="running", live_release__status=Release.Status.LIVE)
    for service in services.select_related("team"):
        try:
            samples = backend_for(service).metrics(ServiceRef(service.team.name, service.name))
        except NotImplementedError:
            continue
        except RuntimeBackendError as exc:
            logger.warning("no metrics from %s: %s", service, exc.message)
            continue
        points = [
            MetricPoint(
                service=service,
                timestamp=sample.timestamp if sample.timestamp.tzinfo else timezone.make_aware(sample.timestamp),
                name=sample.name,
                value=sample.value,
                instance=series_of(sample.labels),
            )
            for sample in samples
        ]
        if points:
            # Runtimes that report per minute (Cloud Run) give the same point
            # again until the next minute; it is kept once.
            known = set(
                MetricPoint.objects.filter(service=service, timestamp__gte=min(p.timestamp for p in points))
                .values_list("name", "instance", "timestamp")
            )
            points = [p for p in points if (p.name, p.instance, p.timestamp) not in known]
        MetricPoint.objects.bulk_create(points)
        kept += len(points)
    cutoff = timezone.now() - timedelta(hours=settings.METRICS_RETENTION_HOURS)
    MetricPoint.objects.filter(timestamp__lt=cutoff).delete()
    return kept


def series_of(labels: dict[str, str]) -> str:
    """What tells one series of a metric from another, as stored: the
    instance's name, or for runtimes that report aggregates, the labels they
    group by ("response_code_class=2xx")."""
    if labels.get("instance"):
        return labels["instance"]
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()) if value)


def labels_of(series: str) -> dict[str, str]:
    if not series:
        return {}
    if "=" not in series:
        return {"instance": series}
    return dict(part.split("=", 1) for part in series.split(","))


def history(service: Service, since: datetime, step: int) -> list[dict]:
    """The service's stored readings since `since`, averaged per `step`
    seconds, per metric and instance, oldest first."""
    buckets: dict[tuple[str, str, int], list[float]] = {}
    points = MetricPoint.objects.filter(service=service, timestamp__gte=since).values_list(
        "timestamp", "name", "instance", "value"
    )
    for stamp, name, instance, value in points.iterator():
        bucket = int(stamp.timestamp()) // step * step
        buckets.setdefault((name, instance, bucket), []).append(value)
    rows = [
        {
            "timestamp": datetime.fromtimestamp(bucket, tz=timezone.get_current_timezone()),
            "name": name,
            "value": sum(values) / len(values),
            "labels": labels_of(instance),
        }
        for (name, instance, bucket), values in buckets.items()
    ]
    return sorted(rows, key=lambda row: (row["timestamp"], row["name"], row["labels"].get("instance", "")))
