"""What a running service does, for the service page: its instances as the
runtime sees them, what they print, and charts of their readings."""

from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from hakobune.platform.observability import logstore
from hakobune.platform.observability.charts import build_charts
from hakobune.platform.observability.logstore import LogFilter
from hakobune.platform.services.access import service_for
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.services import process_counts
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


# The most lines the log card holds while following: the oldest go as new ones come.
LOG_LINES_SHOWN = 2000

LOG_SINCE = {"": None, "15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "72h": 72 * 3600}


def _log_filter(params, processes) -> tuple[LogFilter, dict]:
    """The filter the log card's form asks for, and its values to show back."""
    chosen = {
        "q": (params.get("q") or "")[:200],
        "stream": params.get("stream") if params.get("stream") in logstore.STREAMS else "",
        "process": params.get("process") if params.get("process") in processes else "",
        "release": (params.get("release") or "").lstrip("vV"),
        "since": params.get("since") if params.get("since") in LOG_SINCE else "",
    }
    if not chosen["release"].isdigit():
        chosen["release"] = ""
    seconds = LOG_SINCE[chosen["since"]]
    wanted = LogFilter(text=chosen["q"], stream=chosen["stream"], process=chosen["process"],
                       release=int(chosen["release"]) if chosen["release"] else None,
                       since=timezone.now() - timedelta(seconds=seconds) if seconds else None)
    return wanted, chosen


def _id_of(params, name) -> int | None:
    value = params.get(name) or ""
    return int(value) if value.isdigit() else None


@login_required
def runtime_logs(request, team, service):
    """The service's runtime log, as stored by the log collector: the last
    page, the page before (?before=<id>), or the lines after the last shown
    (?after=<id>, which the page asks every few seconds to follow); filtered
    by text, stream, process, release and time. A filtered page reads at most
    LOGS_SEARCH_LINES lines and says how far back it read."""
    _, service = service_for(request.user, team, service)
    backend = backend_for(service)
    if "collected_logs" not in backend.capabilities:
        return _runtime_logs_from_backend(request, service, backend)
    processes = list(process_counts(service))
    wanted, chosen = _log_filter(request.GET, processes)
    after, before = _id_of(request.GET, "after"), _id_of(request.GET, "before")
    context = {"service": service, "chosen": chosen, "query": urlencode({k: v for k, v in chosen.items() if v}),
               "streams": logstore.STREAMS, "processes": processes if len(processes) > 1 else [],
               "ranges": [k for k in LOG_SINCE if k], "search_lines": logstore.search_lines(),
               "keep": LOG_LINES_SHOWN, "error": ""}
    if after is not None:
        # A whole page each time, so that following keeps up with a service
        # printing at its rate limit.
        lines, last = logstore.after(service.id, wanted, after, limit=settings.LOGS_PAGE_MAX)
        return render(request, "observability/_runtime_log_more.html", {**context, "lines": lines, "last": last})
    page = logstore.tail(service.id, wanted, before=before)
    context.update(lines=page.lines, before=page.before, searched_back_to=page.searched_back_to,
                   last=page.lines[-1].id if page.lines else logstore.newest_id(service.id))
    if before is not None:
        return render(request, "observability/_runtime_log_older.html", context)
    return render(request, "observability/_runtime_logs.html", context)


def _runtime_logs_from_backend(request, service, backend):
    """Runtimes that keep their services' logs themselves (Cloud Run: Cloud
    Logging) are asked for the last lines."""
    if not service.live_release_id:
        raise Http404("This service is not running.")
    try:
        lines = backend.logs(ServiceRef(service.team.name, service.name), tail=200)
    except RuntimeBackendError as exc:
        return render(request, "observability/_runtime_logs_backend.html",
                      {"service": service, "lines": [], "error": exc.message})
    return render(request, "observability/_runtime_logs_backend.html", {"service": service, "lines": lines, "error": ""})


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
    # About 60 points a line, but never finer than the runtime reports (15 s here, a minute on Cloud Run);
    # beyond a minute, whole periods of the roll-up, so that each step holds as many of them.
    step = max(seconds // 60, 60)
    if step > 60:
        step = -(-step // settings.METRICS_ROLLUP_SECONDS) * settings.METRICS_ROLLUP_SECONDS
    charts = build_charts(history(service, since, step), since, until, step)
    return render(request, "observability/_metrics.html", {
        "service": service, "charts": charts, "ranges": list(METRIC_RANGES),
        "chosen": chosen, "every": settings.METRICS_SECONDS,
    })
