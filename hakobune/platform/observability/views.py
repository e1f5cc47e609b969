"""What a running service does, for the service page: its instances as the
runtime sees them, what they print, charts of their readings and its events;
and the audit log of a team (its owners) and of every team (staff)."""

from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from hakobune.platform.accounts.models import Team
from hakobune.platform.accounts.permissions import staff_or_403, team_for_audit
from hakobune.platform.observability import events, logstore
from hakobune.platform.observability.charts import build_charts
from hakobune.platform.observability.logstore import LogFilter
from hakobune.platform.services.access import service_for
from hakobune.platform.services.backends import backend_for
from hakobune.runtime.base import RuntimeBackendError, ServiceRef

from .collectors import history
from .models import Event

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


LOG_SINCE = {"": None, "15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "72h": 72 * 3600}


def _log_filter(params) -> tuple[LogFilter, dict]:
    """The filter the log card's form asks for, and its values to show back."""
    chosen = {
        "q": (params.get("q") or "")[:200],
        "stream": params.get("stream") if params.get("stream") in logstore.STREAMS else "",
        "release": (params.get("release") or "").lstrip("vV"),
        "since": params.get("since") if params.get("since") in LOG_SINCE else "",
    }
    if not chosen["release"].isdigit():
        chosen["release"] = ""
    seconds = LOG_SINCE[chosen["since"]]
    wanted = LogFilter(text=chosen["q"], stream=chosen["stream"],
                       release=int(chosen["release"]) if chosen["release"] else None,
                       since=timezone.now() - timedelta(seconds=seconds) if seconds else None)
    return wanted, chosen


def _id_of(params, name) -> int | None:
    value = params.get(name) or ""
    return int(value) if value.isdigit() else None


@login_required
def runtime_logs(request, team, service):
    """The service's runtime log, as stored by the log collector: the last
    page (at most LOGS_PAGE_MAX lines), the page before (?before=<id>), or
    the lines after the last shown (?after=<id>, which the page asks every
    few seconds to follow); filtered by text, stream, release and time."""
    _, service = service_for(request.user, team, service)
    backend = backend_for(service)
    if "collected_logs" not in backend.capabilities:
        return _runtime_logs_from_backend(request, service, backend)
    wanted, chosen = _log_filter(request.GET)
    after, before = _id_of(request.GET, "after"), _id_of(request.GET, "before")
    context = {"service": service, "chosen": chosen, "query": urlencode({k: v for k, v in chosen.items() if v}),
               "streams": logstore.STREAMS, "ranges": [k for k in LOG_SINCE if k], "error": ""}
    if after is not None:
        lines = logstore.after(service.id, wanted, after)
        last = lines[-1].id if lines else after
        return render(request, "observability/_runtime_log_more.html", {**context, "lines": lines, "last": last})
    lines = logstore.tail(service.id, wanted, before=before)
    context.update(lines=lines, first=lines[0].id if lines else None,
                   older=len(lines) >= logstore.page_size(None),
                   last=lines[-1].id if lines else _last_id(service.id))
    if before is not None:
        return render(request, "observability/_runtime_log_older.html", context)
    return render(request, "observability/_runtime_logs.html", context)


def _last_id(service_id: int) -> int:
    from .models import LogLine

    return LogLine.objects.filter(service_id=service_id).order_by("-id").values_list("id", flat=True).first() or 0


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
    # About 60 points a line, but never finer than the runtime reports (15 s here, a minute on Cloud Run).
    step = max(seconds // 60, 60)
    charts = build_charts(history(service, since, step), since, until, step)
    return render(request, "observability/_metrics.html", {
        "service": service, "charts": charts, "ranges": list(METRIC_RANGES),
        "chosen": chosen, "every": settings.METRICS_SECONDS,
    })


# -- events: the service's timeline, the team's audit log, every team's for staff ---------

EVENT_SINCE = {"": None, "24h": 1, "7d": 7, "30d": 30, "90d": 90, "365d": 365}


def _event_filter(params, *, teams: bool = False) -> tuple[dict, dict]:
    """What the events page's filters ask (kind: a family or a kind; since:
    one of EVENT_SINCE; with `teams`, a team's name), as `events.page` takes
    it and as the form shows it back."""
    kind = params.get("kind") or ""
    if kind not in events.families() and kind not in events.KINDS:
        kind = ""
    since = params.get("since") if params.get("since") in EVENT_SINCE else ""
    chosen = {"kind": kind, "since": since, "team": (params.get("team") or "")[:30] if teams else ""}
    days = EVENT_SINCE[since]
    wanted = {"kinds": [kind] if kind else None, "since": timezone.now() - timedelta(days=days) if days else None,
              "before": _id_of(params, "before")}
    return wanted, chosen


@login_required
def service_events(request, team, service):
    """The service's timeline, newest first, for every member of its team;
    older pages by ?before=<id> (the rows alone, which the page appends)."""
    _, service = service_for(request.user, team, service)
    wanted, _chosen = _event_filter(request.GET)
    found, older = events.page(service.events.all(), **wanted)
    context = {"service": service, "events": found, "older": older}
    if wanted["before"] is not None:
        return render(request, "observability/_event_rows.html", context)
    return render(request, "observability/_events.html", context)


@login_required
def team_events(request, team):
    """The team's audit log: its services' events and its own (members,
    quota), for its owners and the administrators."""
    team = team_for_audit(request.user, team)
    return _audit_page(request, Event.objects.filter(team=team), team=team)


@login_required
def all_events(request):
    """Every team's events, for the administrators, by team, kind and time."""
    staff_or_403(request.user, "read every team's events")
    return _audit_page(request, Event.objects.all(), team=None)


def _audit_page(request, rows, *, team):
    wanted, chosen = _event_filter(request.GET, teams=team is None)
    if chosen["team"]:
        rows = rows.filter(team_name=chosen["team"])
    found, older = events.page(rows, **wanted)
    query = urlencode({name: value for name, value in chosen.items() if value})
    if wanted["before"] is not None and request.headers.get("HX-Request"):
        return render(request, "observability/_event_rows.html", {
            "events": found, "older": older, "query": query, "with_service": True, "with_team": team is None})
    return render(request, "observability/audit_log.html", {
        "team": team, "events": found, "older": older, "chosen": chosen, "query": query,
        "with_service": True, "with_team": team is None,
        "families": events.family_choices(), "ranges": [name for name in EVENT_SINCE if name],
        "teams": [] if team is not None else list(Team.objects.order_by("name").values_list("name", flat=True)),
    })
