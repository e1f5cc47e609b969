"""What a running service does, for the service page: its instances as the
runtime sees them, what they print, and charts of their readings."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from hakobune.platform.observability.charts import build_charts
from hakobune.platform.services.access import service_for
from hakobune.platform.services.backends import backend_for
from hakobune.runtime.base import RuntimeBackendError, ServiceRef

from .collectors import history

METRIC_RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "48h": 48 * 3600}


@login_required
def runtime_status(request, team, service):
    """The instances as the runtime sees them now: running, stopped, or in a
    crash loop (with the exit code and OOM kills)."""
    _, service = service_for(request.user, team, service)
    try:
        status = backend_for(service).status(ServiceRef(service.team.name, service.name))
    except RuntimeBackendError as exc:
        return render(request, "observability/_runtime_status.html", {"service": service, "runtime": None, "error": exc.message})
    return render(request, "observability/_runtime_status.html", {"service": service, "runtime": status, "error": ""})


@login_required
def runtime_logs(request, team, service):
    _, service = service_for(request.user, team, service)
    if not service.live_release_id:
        raise Http404("This service is not running.")
    try:
        lines = backend_for(service).logs(ServiceRef(service.team.name, service.name), tail=200)
    except RuntimeBackendError as exc:
        return render(request, "observability/_runtime_logs.html", {"lines": [], "error": exc.message})
    return render(request, "observability/_runtime_logs.html", {"lines": lines, "error": ""})


@login_required
def service_metrics(request, team, service):
    """Charts of the collected readings (CPU, memory; requests, latency and
    instances where the runtime reports them) over the chosen range."""
    _, service = service_for(request.user, team, service)
    chosen = request.GET.get("range", "1h")
    if chosen not in METRIC_RANGES:
        chosen = "1h"
    seconds = METRIC_RANGES[chosen]
    until = timezone.now()
    since = until - timedelta(seconds=seconds)
    # About 60 points a line, but never finer than the runtime reports (15 s here, a minute on Cloud Run).
    step = max(seconds // 60, 60)
    charts = build_charts(history(service, since, step), since, until, step)
    return render(request, "observability/_metrics.html", {
        "service": service, "charts": charts, "ranges": list(METRIC_RANGES),
        "chosen": chosen, "every": settings.METRICS_SECONDS,
    })
