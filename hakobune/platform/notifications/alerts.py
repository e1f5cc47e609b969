"""What raises an alert, each called in one line where the platform learns of
it: a build that failed (builds/state.fail), instances in a crash loop (the
reconciler: local instances the engine keeps restarting, and crashes a
runtime reports, like Cloud Run's failed revisions), memory near its limit and many failing requests (the metrics
collection), a backup that failed (the backups, when they come), and an
owner's test.

An alert is written (with one pending delivery per target of its team) only
when the team has a target and its rules want the event; the deliveries are
sent by the task deliver_notification on the housekeeping queue, after the
surrounding transaction commits. A crash loop, high memory or failing
requests alert once per NOTIFY_COOLDOWN_MINUTES per service, however many
passes see it. Nothing here ever raises into its caller: a notification that
cannot be raised is logged and counted, and what reported it goes on."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.urls import reverse
from django.utils import timezone

from hakobune.platform import queue
from hakobune.platform.locks import redis_client
from hakobune.platform.services.models import DesiredState, Service

from .models import Alert, AlertRules, Delivery, Event, NotificationTarget

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


# -- the trigger points ------------------------------------------------------------------


def deploy_failed(build_id: int) -> None:
    """A build ended failed: its team is told once (state.fail ends a build once)."""
    _safely(_deploy_failed, build_id)


def crash_loop_seen(service: Service, instances) -> None:
    """The reconciler's look at a service's instances (ObservedInstance): an
    instance the runtime keeps restarting is a crash loop."""
    crashing = [instance for instance in instances or () if instance.state == "restarting"]
    if crashing and service.desired_state == DesiredState.RUNNING:
        _safely(_crash_loop, service, crashing)


def crashes_reported(service: Service, crashes) -> None:
    """The crashes a runtime reported of the service's live release
    (RuntimeBackend.crashes: Cloud Run's failed revisions): a crash loop, as
    the local instances the engine keeps restarting are."""
    live = str(service.live_release_id)
    crashing = [crash for crash in crashes or () if str(crash.release_id) == live]
    if crashing and service.desired_state == DesiredState.RUNNING:
        _safely(_crash_loop, service, crashing)


def metrics_collected(points) -> None:
    """After a metrics collection stored `points` (collectors.Point): memory near
    its limit from these readings, and failing requests over the last
    NOTIFY_ERROR_RATE_MINUTES of stored request counts."""
    _safely(_metrics_collected, points)


def backup_failed(*, team_id: int, what: str, reason: str, service_id: int | None = None, backup_id=None) -> None:
    """A backup failed: `what` names what was backed up (an add-on, a
    database), `reason` says why, in English. Each failed backup is told once
    (by `backup_id`, when given)."""
    key = f"backup_failed:{backup_id if backup_id is not None else uuid.uuid4().hex}"
    _safely(raise_alert, team_id, service_id, Event.BACKUP_FAILED, {"what": what, "reason": reason}, key=key)


def send_test(target: NotificationTarget) -> Delivery:
    """An owner's test: one alert, to this target only, whatever the rules."""
    with transaction.atomic():
        alert = Alert.objects.create(team_id=target.team_id, event=Event.TEST, key=f"test:{target.id}",
                                     params={"team": target.team.name, "target": target.name,
                                             "link": portal_link("notifications:page", target.team.name)})
        delivery = Delivery.objects.create(alert=alert, target=target, target_name=target.name,
                                           target_kind=target.kind)
        queue.enqueue_on_commit("deliver_notification", delivery.id)
    return delivery


# -- raising an alert --------------------------------------------------------------------


def raise_alert(team_id: int, service_id: int | None, event: str, params: dict, *, key: str,
                cooldown: bool = False) -> Alert | None:
    """Writes the alert and a pending delivery per target (the targets its
    rules name, else all the team's), and queues them; None when the team has no target, its rules do not want the event, or
    (with `cooldown`) the same key alerted within NOTIFY_COOLDOWN_MINUTES."""
    targets = list(NotificationTarget.objects.filter(team_id=team_id))
    if not targets:
        return None
    rules = rules_for(team_id, service_id)
    if not rules.wants(event):
        return None
    if rules.pk is not None:
        # Rules that name some of the team's targets send to those only.
        chosen = set(rules.targets.values_list("id", flat=True))
        if chosen:
            targets = [target for target in targets if target.id in chosen]
    now = timezone.now()
    with transaction.atomic():
        if service_id is not None:
            # Two passes at once (a reconcile and a collection) wait for each other here.
            list(Service.objects.select_for_update().filter(id=service_id).values_list("id", flat=True))
        window = now - timedelta(minutes=settings.NOTIFY_COOLDOWN_MINUTES) if cooldown else None
        if Alert.objects.filter(key=key, **({"created_at__gte": window} if window else {})).exists():
            return None
        alert = Alert.objects.create(team_id=team_id, service_id=service_id, event=event, params=params, key=key,
                                     created_at=now)
        deliveries = Delivery.objects.bulk_create([
            Delivery(alert=alert, target=target, target_name=target.name, target_kind=target.kind, created_at=now)
            for target in targets
        ])
        for delivery in deliveries:
            queue.enqueue_on_commit("deliver_notification", delivery.id)
        Alert.objects.filter(team_id=team_id, created_at__lt=now - timedelta(days=settings.NOTIFY_KEEP_DAYS)).delete()
    return alert


def rules_for(team_id: int, service_id: int | None = None) -> AlertRules:
    """The service's own rules, else its team's, else the defaults."""
    rows = {rules.service_id: rules for rules in
            AlertRules.objects.filter(Q(service__isnull=True) | Q(service_id=service_id), team_id=team_id)}
    return rows.get(service_id) or rows.get(None) or AlertRules(team_id=team_id)


def portal_link(name: str, *args) -> str:
    return f"{settings.PORTAL_URL.rstrip('/')}{reverse(name, args=args)}"


def _safely(action, *args, **kwargs) -> None:
    try:
        action(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a notification never fails what it reports on
        logger.exception("an alert could not be raised (%s)", getattr(action, "__name__", action))
        count("errors")


# -- each event --------------------------------------------------------------------------


def _deploy_failed(build_id: int) -> None:
    from hakobune.platform.builds.models import Build

    build = Build.objects.select_related("service__team").get(id=build_id)
    service = build.service
    params = {
        "team": service.team.name, "service": service.name, "build": build.number, "step": build.failed_step,
        "reason": build.failure_reason, "rule": build.failure_rule, "rule_params": build.failure_params,
        "link": portal_link("builds:detail", service.team.name, service.name, build.number),
    }
    raise_alert(service.team_id, service.id, Event.DEPLOY_FAILED, params, key=f"deploy_failed:{build.id}")


def _crash_loop(service: Service, crashing) -> None:
    processes = sorted({instance.process for instance in crashing})
    params = {"team": service.team.name, "service": service.name, "processes": ", ".join(processes),
              "instances": len(crashing),
              **({"reason": crashing[0].message} if getattr(crashing[0], "message", "") else {}), "link": portal_link("services:detail", service.team.name, service.name)}
    raise_alert(service.team_id, service.id, Event.CRASH_LOOP, params, key=f"crash_loop:{service.id}", cooldown=True)


def _metrics_collected(points) -> None:
    watched = set(NotificationTarget.objects.values_list("team_id", flat=True).distinct())
    if not watched:
        return
    services = {service.id: service for service in
                Service.objects.filter(team_id__in=watched).exclude(desired_state=DesiredState.DELETED)
                .select_related("team")}
    rules = {(r.team_id, r.service_id): r for r in AlertRules.objects.filter(team_id__in=watched)}

    def rules_of(service):
        return rules.get((service.team_id, service.id)) or rules.get((service.team_id, None)) or AlertRules()

    def link(service):
        return portal_link("services:detail", service.team.name, service.name)

    for service_id, (percent, limit) in memory_use(points).items():
        service = services.get(service_id)
        wanted = rules_of(service) if service else None
        if wanted is None or not wanted.memory_high or percent < wanted.memory_percent:
            continue
        params = {"team": service.team.name, "service": service.name, "percent": round(percent),
                  "limit_mb": round((limit or service.memory_mb * MIB) / MIB), "threshold": wanted.memory_percent,
                  "link": link(service)}
        raise_alert(service.team_id, service.id, Event.MEMORY_HIGH, params, key=f"memory_high:{service.id}",
                    cooldown=True)

    minutes = settings.NOTIFY_ERROR_RATE_MINUTES
    for service_id, (failed, total) in request_errors(list(services), minutes).items():
        service = services[service_id]
        wanted = rules_of(service)
        rate = 100.0 * failed / total
        if total < settings.NOTIFY_ERROR_RATE_MIN_REQUESTS or not wanted.error_rate or rate < wanted.error_rate_percent:
            continue
        params = {"team": service.team.name, "service": service.name, "rate": round(rate, 1), "failed": int(failed),
                  "requests": int(total), "minutes": minutes, "threshold": wanted.error_rate_percent,
                  "link": link(service)}
        raise_alert(service.team_id, service.id, Event.ERROR_RATE, params, key=f"error_rate:{service.id}",
                    cooldown=True)


def memory_use(points) -> dict[int, tuple[float, float | None]]:
    """{service id: (the highest percent of its memory limit any of its
    instances uses, that instance's limit in bytes)} of one collection's
    readings: memory_bytes over memory_limit_bytes of the same instance, or
    a runtime's own memory_percent (Cloud Run)."""
    used, limits, highest = {}, {}, {}

    def note(service_id, percent, limit):
        if percent > highest.get(service_id, (0.0, None))[0]:
            highest[service_id] = (percent, limit)

    for point in points:
        series = (point.service_id, point.instance)
        if point.name == "memory_bytes":
            used[series] = point.value
        elif point.name == "memory_limit_bytes" and point.value > 0:
            limits[series] = point.value
        elif point.name == "memory_percent":
            note(point.service_id, point.value, None)
    for series, value in used.items():
        if series in limits:
            note(series[0], 100.0 * value / limits[series], limits[series])
    return highest


def request_errors(service_ids: list[int], minutes: int) -> dict[int, tuple[float, float]]:
    """{service id: (5xx answers, all answers)} over the last `minutes`, from
    the request counts the router's access log (or Cloud Monitoring) gave."""
    from hakobune.platform.observability.models import MetricPoint

    since = timezone.now() - timedelta(minutes=minutes)
    totals: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    rows = (MetricPoint.objects.filter(service_id__in=service_ids, name="request_count", timestamp__gte=since)
            .values("service_id", "instance").annotate(count=Sum("value")).order_by())
    for row in rows:
        totals[row["service_id"]][1] += row["count"]
        if row["instance"] == "response_code_class=5xx":
            totals[row["service_id"]][0] += row["count"]
    return {service_id: (failed, total) for service_id, (failed, total) in totals.items() if total}


# -- counts, for a later /metrics ---------------------------------------------------------

OUTCOMES = ("sent", "failed", "errors")


def _count_key(outcome: str) -> str:
    return f"hakobune:{settings.CELERY_TASK_DEFAULT_QUEUE}:notifications:{outcome}"


def count(outcome: str) -> None:
    """Counts a delivery sent or failed, or an alert that could not be raised."""
    try:
        redis_client().incr(_count_key(outcome))
    except Exception:  # noqa: BLE001 - Redis away: the count misses one; the delivery row says it all the same
        logger.warning("could not count a notification %s", outcome)


def counts() -> dict[str, int]:
    """Deliveries sent and failed, and alerts that could not be raised, since Redis last started."""
    values = redis_client().mget([_count_key(outcome) for outcome in OUTCOMES])
    return {outcome: int(value or 0) for outcome, value in zip(OUTCOMES, values)}
