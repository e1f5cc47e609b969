"""The metrics collector: every little while, each live service's backend is
asked for its instances' current readings, which are kept as history for a
while; charts and the API read that history."""

import logging
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, F
from django.utils import timezone

from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.models import DesiredState, Release, Service
from hakobune.runtime.base import RuntimeBackendError, ServiceRef

from .models import MetricPoint

logger = logging.getLogger(__name__)


def collect_all() -> int:
    """Stores one reading of every running service; returns the points kept."""
    kept = 0
    services = Service.objects.filter(desired_state=DesiredState.RUNNING, live_release__status=Release.Status.LIVE)
    for service in services.select_related("team"):
        try:
            samples = backend_for(service).metrics(ServiceRef(service.team.name, service.name))
        except NotImplementedError:
            continue
        except RuntimeBackendError as exc:
            logger.warning("no metrics from %s: %s", service, exc.message)
            continue
        points = []
        for sample in samples:
            stamp = sample.timestamp if sample.timestamp.tzinfo else timezone.make_aware(sample.timestamp)
            points.append(MetricPoint(service=service, timestamp=stamp, epoch=int(stamp.timestamp()), name=sample.name,
                                      value=sample.value, instance=series_of(sample.labels)))
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


def roll_up(now: datetime | None = None) -> int:
    """Replaces the single readings older than METRICS_RAW_HOURS by their
    average over each METRICS_ROLLUP_SECONDS, per service, metric and
    series; returns how many readings were replaced."""
    period = settings.METRICS_ROLLUP_SECONDS
    now = now or timezone.now()
    # Whole periods only, so that no period is rolled up half.
    cutoff = int((now - timedelta(hours=settings.METRICS_RAW_HOURS)).timestamp()) // period * period
    single = MetricPoint.objects.filter(period=0, epoch__lt=cutoff)
    with transaction.atomic():
        averages = (
            single.annotate(bucket=F("epoch") / period)
            .values("service_id", "name", "instance", "bucket")
            .annotate(average=Avg("value"))
            .order_by()
        )
        rolled = [
            MetricPoint(
                service_id=row["service_id"], name=row["name"], instance=row["instance"], value=row["average"],
                epoch=row["bucket"] * period, period=period,
                timestamp=datetime.fromtimestamp(row["bucket"] * period, tz=dt_timezone.utc),
            )
            for row in averages.iterator()
        ]
        replaced, _ = single.delete()
        MetricPoint.objects.bulk_create(rolled, batch_size=2000)
    return replaced


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
    seconds (by the database), per metric and instance, oldest first."""
    averaged = (
        MetricPoint.objects.filter(service=service, timestamp__gte=since)
        # Whole numbers divide to whole numbers on SQLite and PostgreSQL alike.
        .annotate(bucket=F("epoch") / int(step))
        .values("bucket", "name", "instance")
        .annotate(average=Avg("value"))
        .order_by("bucket", "name", "instance")
    )
    return [
        {
            "timestamp": datetime.fromtimestamp(row["bucket"] * step, tz=timezone.get_current_timezone()),
            "name": row["name"],
            "value": row["average"],
            "labels": labels_of(row["instance"]),
        }
        for row in averaged
    ]
