"""Scale to zero. The router's access log says when each service last had a
request; a service idle for its idle_minutes is put to sleep (its instances
stop and its route points at the waker); the waker (waker.py) starts it on the
next request and answers that request once the service is healthy."""

import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from redis.exceptions import LockError

from hakobune.runtime.base import RuntimeBackendError, ServiceRef
from hakobune.platform.locks import deploy_lock, redis_client
from hakobune.platform.observability.events import record_event

from .backends import backend_for
from .models import DesiredState, Domain, Release, Service
from .releases import deploy_spec

logger = logging.getLogger(__name__)


def service_for_hostname(hostname: str) -> Service | None:
    """The service that answers at `hostname`: its own address, a verified
    custom domain, or an old address still redirecting (one table, one row
    per hostname)."""
    domain = (
        Domain.objects.filter(hostname=hostname.rstrip(".").lower())
        .select_related("service__team", "service__live_release")
        .first()
    )
    if domain is None or domain.service.desired_state == DesiredState.DELETED:
        return None
    if domain.kind == Domain.Kind.CUSTOM and domain.verified_at is None:
        return None
    if domain.kind == Domain.Kind.LEGACY and not domain.is_live_legacy:
        return None
    return domain.service


def note_traffic(log_path: str) -> int:
    """Reads the router's access log from where the last call stopped and
    records each service's latest request. Returns the lines read."""
    if not log_path or not os.path.exists(log_path):
        return 0
    store = redis_client()
    key = f"hakobune:access-log-offset:{log_path}"
    offset = int(store.get(key) or 0)
    size = os.path.getsize(log_path)
    if size < offset:  # the log was rotated
        offset = 0
    latest: dict[str, float] = {}
    count = 0
    with open(log_path, "rb") as handle:
        handle.seek(offset)
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # a line still being written; read it next time
            offset += len(raw)
            count += 1
            try:
                entry = json.loads(raw)
                host = entry["request"]["host"].rsplit(":", 1)[0].lower()
                stamp = float(entry["ts"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            latest[host] = max(stamp, latest.get(host, 0.0))
    store.set(key, offset)
    for host, stamp in latest.items():
        service = service_for_hostname(host)
        if service is not None:
            seen = datetime.fromtimestamp(stamp, tz=timezone.get_current_timezone())
            Service.objects.filter(id=service.id).filter(
                Q(last_request_at__isnull=True) | Q(last_request_at__lt=seen)
            ).update(last_request_at=seen)
    return count


def idle_services(now=None):
    now = now or timezone.now()
    candidates = Service.objects.filter(
        scale_to_zero=True, desired_state=DesiredState.RUNNING, live_release__status=Release.Status.LIVE, public=True
    ).select_related("team", "live_release")
    for service in candidates:
        last = max(filter(None, [service.last_request_at, service.live_release.live_at]), default=None)
        if last is not None and now - last >= timedelta(minutes=service.idle_minutes):
            yield service


def put_to_sleep(service: Service) -> None:
    backend = backend_for(service)
    if "scale_to_zero" not in backend.capabilities:
        return
    if Service.objects.filter(id=service.id, desired_state=DesiredState.RUNNING).update(desired_state=DesiredState.SLEEPING):
        record_event("service.slept", service=service, minutes=service.idle_minutes)
    backend.sleep(ServiceRef(service.team.name, service.name), service.hostname, service.aliases, service.redirects)
    logger.info("%s scaled to zero after %s idle minutes", service, service.idle_minutes)


def is_wakeable(service: Service) -> bool:
    """Only a public service with a live release that is asleep is woken by a
    request: a private one has no address, a stopped one was stopped by its
    team, and a running one is reached by the router directly."""
    return service.public and service.live_release_id is not None and service.desired_state == DesiredState.SLEEPING


@dataclass(frozen=True)
class WakeOutcome:
    upstreams: tuple[str, ...] = ()
    # Why it did not wake, in words for the person who asked.
    problem: str = ""
    # It was no longer asleep (woken by someone else, stopped, made private).
    not_asleep: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text) -> "WakeOutcome":
        data = json.loads(text)
        return cls(tuple(data.get("upstreams") or ()), data.get("problem", ""), bool(data.get("not_asleep")))


def wake_sleeping(service_id: int, *, lock_wait: float) -> WakeOutcome:
    """Wakes a service that a request asked for while it slept, once for all
    the requests that came meanwhile (the waker makes sure of that). Waits at
    most `lock_wait` seconds for the service's deploy lock, and wakes it only
    if it is still wakeable then."""
    lock = deploy_lock(service_id)
    if not lock.acquire(blocking_timeout=lock_wait):
        return WakeOutcome(problem="a deploy of this service is under way; try again in a minute")
    try:
        service = Service.objects.select_related("team", "live_release").filter(id=service_id).first()
        if service is None or not is_wakeable(service):
            return WakeOutcome(not_asleep=True)
        try:
            upstreams = backend_for(service).wake(deploy_spec(service, service.live_release))
        except RuntimeBackendError as exc:
            return WakeOutcome(problem=exc.message)
        if not upstreams:
            return WakeOutcome(problem="no instance of it answered")
        if Service.objects.filter(id=service.id, desired_state=DesiredState.SLEEPING).update(
            desired_state=DesiredState.RUNNING, last_request_at=timezone.now()
        ):
            record_event("service.woke", service=service)
        logger.info("%s woken by a request", service)
        return WakeOutcome(tuple(upstreams))
    finally:
        try:
            lock.release()
        except LockError:  # it expired meanwhile
            pass


def wake(service: Service) -> list[str]:
    """Starts a sleeping service and routes to it again, under its deploy lock
    (many first requests wake it once); returns the addresses of its healthy
    instances."""
    with deploy_lock(service.id):
        upstreams = backend_for(service).wake(deploy_spec(service, service.live_release))
        Service.objects.filter(id=service.id).update(desired_state=DesiredState.RUNNING, last_request_at=timezone.now())
    return upstreams
