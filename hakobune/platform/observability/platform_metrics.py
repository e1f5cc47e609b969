"""The platform's own metrics, for Prometheus (`GET /metrics`, views.py):
builds by status and their durations, deploys by outcome, services by
backend, the Celery queues' depth, how the metrics collection and the log
collector keep up, the log drains, and the notifications' deliveries (and
failures).

Every value is read at scrape time from the database and Redis by one
custom collector, never counted in the process that answers: the portal runs
several gunicorn workers, and counters of their own would disagree from one
scrape to the next. A scrape is seven queries (one aggregate each over the
builds, the releases, the services, the drains and the notifications'
deliveries; the hosts of builds in progress; the access log's cursor) and
four requests to Redis
(bench/platform_metrics.py measures it).
A source that fails (Redis away) leaves its families out and says so in
`hakobune_scrape_source_ok{source}`; the others are still served."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

import redis
from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils.dateparse import parse_datetime
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from hakobune.platform import queue
from hakobune.platform.builds.models import IN_PROGRESS, Build
from hakobune.platform.notifications.models import Delivery
from hakobune.platform.services.models import DesiredState, Release, Service

from .collectors import collection_health
from .logcollector import health_key
from .models import LogCursor, LogDrain

logger = logging.getLogger(__name__)

# Seconds from a build's admission (fetching) to its end.
BUILD_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
# Kombu's Redis transport keeps a queue with priorities as one list per
# priority step: the queue's name, and the name with a separator and the step.
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (3, 6, 9)

Source = Callable[[], Iterable[Metric]]

def builds() -> Iterable[Metric]:
    """One query: the builds by status and failed step, with each status's
    duration histogram (admission to end), read from the index
    `build_outcomes` alone (status, failed_step, duration_seconds)."""
    buckets = {f"le_{n}": Count("duration_seconds", filter=Q(duration_seconds__lte=seconds))
               for n, seconds in enumerate(BUILD_DURATION_BUCKETS)}
    rows = (Build.objects.values("status", "failed_step")
            .annotate(count=Count("*"), timed=Count("duration_seconds"), seconds=Sum("duration_seconds"), **buckets)
            .order_by())
    by_status: dict[str, int] = defaultdict(int)
    failed_by_step: dict[str, int] = defaultdict(int)
    histogram: dict[str, dict] = {}
    for row in rows:
        status = row["status"]
        by_status[status] += row["count"]
        if row["failed_step"] and status == "failed":
            failed_by_step[row["failed_step"]] += row["count"]
        if row["timed"]:
            into = histogram.setdefault(status, {"count": 0, "seconds": 0.0,
                                                 "buckets": [0] * len(BUILD_DURATION_BUCKETS)})
            into["count"] += row["timed"]
            into["seconds"] += row["seconds"] or 0.0
            for n in range(len(BUILD_DURATION_BUCKETS)):
                into["buckets"][n] += row[f"le_{n}"]
    family = GaugeMetricFamily("hakobune_builds", "Builds (deploys from source) by status, now.", labels=["status"])
    for status, count in sorted(by_status.items()):
        family.add_metric([status], count)
    yield family
    family = GaugeMetricFamily("hakobune_builds_failed_by_step", "Failed builds by the step they failed in.",
                               labels=["step"])
    for step, count in sorted(failed_by_step.items()):
        family.add_metric([step], count)
    yield family
    family = HistogramMetricFamily("hakobune_build_duration_seconds",
                                   "Finished builds' time from admission to their end, by status.", labels=["status"])
    for status, found in sorted(histogram.items()):
        cumulative = [(_le(seconds), found["buckets"][n]) for n, seconds in enumerate(BUILD_DURATION_BUCKETS)]
        family.add_metric([status], cumulative + [("+Inf", found["count"])], sum_value=found["seconds"])
    yield family


def _le(seconds: float) -> str:
    return f"{float(seconds)}"


def deploys() -> Iterable[Metric]:
    """Releases by status: every deploy, rollback, scale or settings change
    makes one; live and superseded ones went live, failed ones did not."""
    family = GaugeMetricFamily("hakobune_deploys", "Releases (deploys, rollbacks, scale and settings changes) by "
                               "outcome: pending, deploying, live, superseded (went live, then replaced), failed.",
                               labels=["outcome"])
    for row in Release.objects.values("status").annotate(count=Count("id")).order_by("status"):
        family.add_metric([row["status"]], row["count"])
    yield family


def services() -> Iterable[Metric]:
    """One query: the services not deleted by backend and desired state,
    and those live (running with a live release) by backend."""
    rows = (Service.objects.exclude(desired_state=DesiredState.DELETED).values("target", "desired_state")
            .annotate(count=Count("id"),
                      live=Count("id", filter=Q(desired_state=DesiredState.RUNNING, live_release__isnull=False)))
            .order_by("target", "desired_state"))
    every = GaugeMetricFamily("hakobune_services", "Services by backend and desired state (running, stopped, "
                              "sleeping).", labels=["backend", "desired_state"])
    live: dict[str, int] = defaultdict(int)
    for row in rows:
        every.add_metric([row["target"], row["desired_state"]], row["count"])
        live[row["target"]] += row["live"]
    yield every
    family = GaugeMetricFamily("hakobune_services_live", "Services running with a live release, by backend.",
                               labels=["backend"])
    for backend, count in sorted(live.items()):
        family.add_metric([backend], count)
    yield family


def queue_names() -> dict[str, str]:
    """{queue: purpose}: the shared queues, this host's, and those of the
    hosts that fetched a build still in progress (platform/queue.py)."""
    names = {queue.queue_of(purpose): purpose for purpose in queue.PURPOSES}
    hosts = {queue.this_host()} | set(
        Build.objects.filter(status__in=IN_PROGRESS).exclude(worker_host="").order_by()
        .values_list("worker_host", flat=True).distinct()
    )
    for host in sorted(hosts):
        names[queue.host_queue(host)] = "host"
    return names


def _broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2)


def queues() -> Iterable[Metric]:
    """The messages waiting in each Celery queue: the lengths of its Redis
    lists, in one round trip."""
    names = queue_names()
    client = _broker()
    try:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
            for step in KOMBU_PRIORITY_STEPS:
                pipe.llen(f"{name}{KOMBU_PRIORITY_SEPARATOR}{step}")
        lengths = pipe.execute()
    finally:
        client.close()
    per_queue = 1 + len(KOMBU_PRIORITY_STEPS)
    family = GaugeMetricFamily("hakobune_queue_depth", "Tasks waiting in each Celery queue (not yet taken by a worker).",
                               labels=["queue", "purpose"])
    for n, (name, purpose) in enumerate(names.items()):
        family.add_metric([name, purpose], sum(lengths[n * per_queue:(n + 1) * per_queue]))
    yield family


def metrics_collection() -> Iterable[Metric]:
    """The scheduled metrics collection (collectors.collect_on_schedule):
    its last run's time, duration and size, and the runs skipped."""
    health = collection_health()
    skipped = CounterMetricFamily("hakobune_metrics_collections_skipped",
                                  "Metrics collections skipped because the one before was still running, since Redis "
                                  "last started.")
    skipped.add_metric([], health["skipped"])
    yield skipped
    last = health["last"]
    if not last:
        return
    at = parse_datetime(last["at"]).timestamp()
    yield _gauge("hakobune_metrics_collection_last_timestamp_seconds", "When the last metrics collection ended.", at)
    yield _gauge("hakobune_metrics_collection_age_seconds",
                 "Seconds since the last metrics collection ended (its period is METRICS_SECONDS).",
                 max(0.0, time.time() - at))
    yield _gauge("hakobune_metrics_collection_duration_seconds", "How long the last metrics collection took.",
                 last["seconds"])
    yield _gauge("hakobune_metrics_collection_points", "Readings stored by the last metrics collection.",
                 last["points"])


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


LOG_COLLECTOR_GAUGES = (
    ("lag_seconds", "hakobune_log_collector_lag_seconds",
     "The most a stored line waited between being printed and being stored, over the last report period (5 s)."),
    ("flush_seconds", "hakobune_log_collector_flush_duration_seconds",
     "The longest store of a batch of lines over the last report period."),
    ("following", "hakobune_log_collector_followed_containers", "Containers whose output the collector follows."),
    ("waiting", "hakobune_log_collector_waiting_lines", "Lines read and not yet stored."),
)


def log_collector() -> Iterable[Metric]:
    """What each host's log collector last reported (logcollector.report,
    every 5 s), and how much of the router's access log it has not read."""
    client = _broker()
    try:
        reports = client.hgetall(health_key())
    finally:
        client.close()
    now = time.time()
    families = {key: GaugeMetricFamily(name, doc, labels=["host"]) for key, name, doc in LOG_COLLECTOR_GAUGES}
    age = GaugeMetricFamily("hakobune_log_collector_report_age_seconds",
                            "Seconds since the collector last reported; over a minute: it is not running.",
                            labels=["host"])
    stored = CounterMetricFamily("hakobune_log_collector_stored_lines",
                                 "Lines stored by the collector since it started.", labels=["host"])
    for host, raw in sorted(reports.items()):
        host = host.decode()
        report = json.loads(raw)
        for key, family in families.items():
            family.add_metric([host], report.get(key, 0))
        age.add_metric([host], max(0.0, now - report.get("at", 0)))
        stored.add_metric([host], report.get("stored", 0))
    yield from families.values()
    yield age
    yield stored
    path = settings.ROUTER_ACCESS_LOG
    if path and os.path.exists(path):
        read = LogCursor.objects.filter(source=f"access:{path}").values_list("position", flat=True).first()
        size = os.path.getsize(path)
        behind = size - read if read is not None and read <= size else 0
        yield _gauge("hakobune_log_collector_access_log_unread_bytes",
                     "Bytes of the router's access log not yet read into request metrics.", behind)


def log_drains() -> Iterable[Metric]:
    """One query over the drains: what each team's drain sent and dropped,
    whether it is failing, and its last success."""
    shipped = CounterMetricFamily("hakobune_log_drain_shipped_lines", "Lines a team's log drain sent.",
                                  labels=["team", "kind"])
    dropped = CounterMetricFamily("hakobune_log_drain_dropped_lines",
                                  "Lines a team's log drain skipped because it was too far behind.",
                                  labels=["team", "kind"])
    failing = GaugeMetricFamily("hakobune_log_drain_failures", "Failed attempts in a row of a team's log drain.",
                                labels=["team", "kind"])
    success = GaugeMetricFamily("hakobune_log_drain_last_success_timestamp_seconds",
                                "When a team's log drain last sent lines.", labels=["team", "kind"])
    for team, kind, sent, skipped, failures, last_success in LogDrain.objects.values_list(
            "team__name", "kind", "shipped_lines", "dropped_lines", "failures", "last_success_at").order_by("team__name"):
        shipped.add_metric([team, kind], sent)
        dropped.add_metric([team, kind], skipped)
        failing.add_metric([team, kind], failures)
        if last_success is not None:
            success.add_metric([team, kind], last_success.timestamp())
    yield from (shipped, dropped, failing, success)


def notifications() -> Iterable[Metric]:
    """One query over the notification deliveries kept (NOTIFY_KEEP_DAYS):
    by status (pending, sent, failed: the failures) and channel. A gauge, not
    a counter: deliveries older than that are deleted with their alerts."""
    family = GaugeMetricFamily("hakobune_notification_deliveries",
                               "Notification deliveries of the last NOTIFY_KEEP_DAYS days by status (pending, sent, "
                               "failed) and channel (email, slack, discord, teams, webhook).",
                               labels=["status", "channel"])
    rows = Delivery.objects.values("status", "target_kind").annotate(count=Count("*")).order_by("status", "target_kind")
    for row in rows:
        family.add_metric([row["status"], row["target_kind"]], row["count"])
    yield family


SOURCES: dict[str, Source] = {
    "builds": builds,
    "deploys": deploys,
    "services": services,
    "queues": queues,
    "metrics_collection": metrics_collection,
    "log_collector": log_collector,
    "log_drains": log_drains,
    "notifications": notifications,
}


class PlatformCollector:
    """prometheus_client's custom collector: each scrape reads every source."""

    def collect(self) -> Iterable[Metric]:
        ok = GaugeMetricFamily("hakobune_scrape_source_ok", "Whether a source of these metrics could be read (1) or "
                               "not (0: its families are left out; the portal's log says why).", labels=["source"])
        took = GaugeMetricFamily("hakobune_scrape_source_duration_seconds", "How long reading a source took.",
                                 labels=["source"])
        for name, source in SOURCES.items():
            started = time.perf_counter()
            try:
                families = list(source())
            except Exception:  # noqa: BLE001 - one source away (Redis, say) leaves the others served
                logger.exception("the platform metrics could not read %s", name)
                families, worked = [], 0
            else:
                worked = 1
            took.add_metric([name], time.perf_counter() - started)
            ok.add_metric([name], worked)
            yield from families
        yield ok
        yield took


def exposition() -> bytes:
    """The metrics in Prometheus's text format, read now."""
    registry = CollectorRegistry()
    registry.register(PlatformCollector())
    return generate_latest(registry)
