"""The metrics collector: every little while, each live service's backend is
asked for its instances' current readings, which are kept as history for a
while; charts and the API read that history."""

import json
import logging
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, F, Sum
from django.utils import timezone
from redis.exceptions import LockError

from hakobune.platform.locks import redis_client
from hakobune.platform.notifications import alerts
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.models import DesiredState, Release, Service
from hakobune.runtime.base import RuntimeBackendError, ServiceRef

from . import bulk
from .models import MetricPoint

logger = logging.getLogger(__name__)


def collect_all() -> int:
    """Stores one reading of every running service; returns the points kept.
    A backend that reads all its services at once (the local one: one
    listing call and the containers' cgroup files) is asked once; the others
    (Cloud Run) once per service."""
    services = Service.objects.filter(desired_state=DesiredState.RUNNING, live_release__status=Release.Status.LIVE)
    by_backend: dict[int, tuple] = {}
    for service in services.select_related("team"):
        try:
            backend = backend_for(service)
        except RuntimeBackendError as exc:
            logger.warning("no metrics from %s: %s", service, exc.message)
            continue
        by_backend.setdefault(id(backend), (backend, {}))[1][ServiceRef(service.team.name, service.name)] = service
    points = []
    for backend, refs in by_backend.values():
        try:
            found = backend.metrics_all(list(refs))
        except NotImplementedError:
            points += _per_service(backend, refs)
            continue
        except RuntimeBackendError as exc:
            logger.warning("no metrics from the %s backend: %s", backend.alias, exc.message)
            continue
        for ref, samples in found.items():
            if ref in refs:
                points += [_point(refs[ref].id, sample) for sample in samples]
    bulk.insert("default", MetricPoint, Point._fields, points)
    alerts.metrics_collected(points)
    cutoff = timezone.now() - timedelta(hours=settings.METRICS_RETENTION_HOURS)
    MetricPoint.objects.filter(timestamp__lt=cutoff).delete()
    return len(points)


class Point(NamedTuple):
    """A reading as it is stored (a MetricPoint's fields): at 200 services a
    collection stores some 800, and a model instance each would cost as
    much as reading them."""

    service_id: int
    timestamp: datetime
    epoch: int
    name: str
    value: float
    instance: str
    period: int = 0


def _point(service_id: int, sample) -> Point:
    stamp = sample.timestamp if sample.timestamp.tzinfo else timezone.make_aware(sample.timestamp)
    return Point(service_id, stamp, int(stamp.timestamp()), sample.name, sample.value, series_of(sample.labels))


def _per_service(backend, refs: dict) -> list[Point]:
    """The points of a backend asked service by service."""
    points = []
    for ref, service in refs.items():
        try:
            samples = backend.metrics(ref)
        except NotImplementedError:
            return points
        except RuntimeBackendError as exc:
            logger.warning("no metrics from %s: %s", service, exc.message)
            continue
        found = [_point(service.id, sample) for sample in samples]
        if found:
            # Runtimes that report per minute (Cloud Run) give the same point
            # again until the next minute; it is kept once.
            known = set(
                MetricPoint.objects.filter(service=service, timestamp__gte=min(p.timestamp for p in found))
                .values_list("name", "instance", "timestamp")
            )
            points += [p for p in found if (p.name, p.instance, p.timestamp) not in known]
    return points


# -- on the scheduler's period -------------------------------------------------------


def _key(name: str) -> str:
    return f"hakobune:{settings.CELERY_TASK_DEFAULT_QUEUE}:metrics:{name}"


def collect_on_schedule() -> int | None:
    """The scheduler's collection: one at a time across every worker (a Redis
    lock that lasts at most one period). One that finds another still
    running is skipped and counted, never stacked behind it; returns the
    points kept, or None when skipped."""
    period = settings.METRICS_SECONDS
    lock = redis_client().lock(_key("collecting"), timeout=period)
    if not lock.acquire(blocking=False):
        count_skipped("the one before is still running")
        return None
    started = time.monotonic()
    try:
        kept = collect_all()
    finally:
        try:
            lock.release()
        except LockError:
            pass  # it outlasted its period and the lock went by itself
    took = time.monotonic() - started
    redis_client().set(_key("last"), json.dumps({"at": timezone.now().isoformat(), "seconds": round(took, 3),
                                                 "points": kept}))
    if took > period:
        logger.warning("a metrics collection took %.1f s, more than its period (%s s)", took, period)
    return kept


def count_skipped(why: str) -> None:
    skipped = redis_client().incr(_key("skipped"))
    logger.warning("a metrics collection was skipped (%s); %s skipped so far", why, skipped)


def collection_health() -> dict:
    """For the administrators: how many collections were skipped, and the
    last one's time and size."""
    client = redis_client()
    last = client.get(_key("last"))
    return {"skipped": int(client.get(_key("skipped")) or 0), "last": json.loads(last) if last else None}


def roll_up(now: datetime | None = None) -> int:
    """Replaces the single readings older than METRICS_RAW_HOURS by their
    average over each METRICS_ROLLUP_SECONDS (their sum for COUNTS), per
    service, metric and series; returns how many readings were replaced."""
    period = settings.METRICS_ROLLUP_SECONDS
    now = now or timezone.now()
    # Whole periods only, so that no period is rolled up half.
    cutoff = int((now - timedelta(hours=settings.METRICS_RAW_HOURS)).timestamp()) // period * period
    single = MetricPoint.objects.filter(period=0, epoch__lt=cutoff)
    with transaction.atomic():
        averages = (
            single.annotate(bucket=F("epoch") / period)
            .values("service_id", "name", "instance", "bucket")
            .annotate(average=Avg("value"), total=Sum("value"))
            .order_by()
        )
        rolled = [
            MetricPoint(
                service_id=row["service_id"], name=row["name"], instance=row["instance"],
                value=row["total"] if row["name"] in COUNTS else row["average"],
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


# Readings that count what happened in their period (the requests of a
# period, the bytes they sent): a step's value is their sum over the step, per
# minute; and the roll-up keeps their sum, not their average.
COUNTS = ("request_count", "response_bytes")


def history(service: Service, since: datetime, step: int) -> list[dict]:
    """The service's stored readings since `since`, per `step` seconds (by
    the database), per metric and instance, oldest first: the average of
    each step's readings; for COUNTS, how many a minute over the step,
    for whole steps only (one that `since` cuts, or still going, holds only
    part of its requests, and would show a dip that is not there)."""
    readings = MetricPoint.objects.filter(service=service, timestamp__gte=since)
    by_step = lambda rows: rows.annotate(bucket=F("epoch") / int(step)).values("bucket", "name", "instance")  # noqa: E731
    # Whole numbers divide to whole numbers on SQLite and PostgreSQL alike.
    rows = [{**row, "value": row["average"]} for row in by_step(readings.exclude(name__in=COUNTS)).annotate(average=Avg("value"))]
    first, now = -(-int(since.timestamp()) // step) * step, int(timezone.now().timestamp()) // step * step
    counted = readings.filter(name__in=COUNTS, epoch__gte=first, epoch__lt=now)
    rows += [{**row, "value": row["total"] * 60 / step} for row in by_step(counted).annotate(total=Sum("value"))]
    rows.sort(key=lambda row: (row["bucket"], row["name"], row["instance"]))
    return [
        {
            "timestamp": datetime.fromtimestamp(row["bucket"] * step, tz=timezone.get_current_timezone()),
            "name": row["name"],
            "value": row["value"],
            "labels": labels_of(row["instance"]),
        }
        for row in rows
    ]
