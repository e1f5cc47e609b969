"""Scale to zero. The router's access log says when each service last had a
request; a service idle for its idle_minutes is put to sleep (its instances
stop and its route points at the waker); the waker starts it on the next
request and answers that request once the service is healthy."""

import json
import logging
import os
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from hakobune.runtime.base import ServiceRef
from hakobune.platform.locks import deploy_lock, redis_client

from .backends import backend_for
from .models import DesiredState, Domain, Release, Service
from .releases import deploy_spec

logger = logging.getLogger(__name__)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "content-encoding", "host"}


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
    Service.objects.filter(id=service.id, desired_state=DesiredState.RUNNING).update(desired_state=DesiredState.SLEEPING)
    backend.sleep(ServiceRef(service.team.name, service.name), service.hostname, service.aliases, service.redirects)
    logger.info("%s scaled to zero after %s idle minutes", service, service.idle_minutes)


def wake(service: Service) -> list[str]:
    """Starts a sleeping service and routes to it again, under its deploy lock
    (many first requests wake it once); returns the addresses of its healthy
    instances."""
    with deploy_lock(service.id):
        upstreams = backend_for(service).wake(deploy_spec(service, service.live_release))
        Service.objects.filter(id=service.id).update(desired_state=DesiredState.RUNNING, last_request_at=timezone.now())
    return upstreams


def forward(request, upstream: str, path: str):
    """Sends the waking request on to the service and returns its answer."""
    session = requests.Session()
    session.trust_env = False
    headers = {key: value for key, value in request.headers.items() if key.lower() not in HOP_BY_HOP}
    headers["Host"] = request.get_host()
    query = request.META.get("QUERY_STRING", "")
    return session.request(
        request.method,
        f"http://{upstream}/{path}" + (f"?{query}" if query else ""),
        headers=headers,
        data=request.body,
        timeout=60,
        allow_redirects=False,
    )
