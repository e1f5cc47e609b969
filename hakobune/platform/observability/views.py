"""What a running service does, for the service page: its instances as the
runtime sees them, what they print, charts of their readings and its events;
the audit log of a team (its owners) and of every team (staff); the
platform's own metrics for Prometheus; a team's log drain page."""

import hmac
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from hakobune.platform.accounts.models import Team
from hakobune.platform.accounts.permissions import member_of, staff_or_403, team_for_audit
from hakobune.platform.diagnoses import render as render_diagnosis
from hakobune.platform.observability import drains, events, logstore
from hakobune.platform.observability.charts import build_charts
from hakobune.platform.observability.logstore import LogFilter
from hakobune.platform.services.access import service_for
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.services import process_counts
from hakobune.runtime.base import RuntimeBackendError, ServiceRef
from hakobune.runtime.hood import HoodUnavailable

from .collectors import history
from .hood import has_hood, read_hood, service_for_hood
from .models import Event
from .platform_metrics import exposition as platform_metrics_text

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
    diagnosis = render_diagnosis(status.rule, status.params) if getattr(status, "rule", "") else ""
    return render(request, "observability/_runtime_status.html",
                  {"service": service, "runtime": status, "error": "", "diagnosis": diagnosis})


@login_required
@require_GET
def under_the_hood(request, team, service):
    """What runs the service, read live from one of its instances (namespaces,
    cgroups, capabilities, image layers, the host's kernel), or what Cloud Run
    does instead: the service page's "Under the hood" panel (observability/hood.py)."""
    service = service_for_hood(request.user, team, service)
    if not has_hood(service):
        raise Http404("This runtime shows nothing under the hood.")
    context = {"service": service, "view": None, "problem": "", "detail": ""}
    try:
        context["view"] = read_hood(service)
    except HoodUnavailable as exc:
        context.update(problem=exc.why, detail=exc.detail)
    except RuntimeBackendError as exc:
        context.update(problem="runtime", detail=exc.message)
    return render(request, "observability/_hood.html", context)


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


# -- the platform's own metrics -------------------------------------------------------------


@require_GET
def platform_metrics(request):
    """Prometheus's scrape: `Authorization: Bearer <METRICS_TOKEN>`. Without a
    token configured there is nothing here (404); no token given is a 401,
    a wrong one a 403."""
    expected = settings.METRICS_TOKEN
    if not expected:
        raise Http404("No such page")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        response = HttpResponse("Send Authorization: Bearer <METRICS_TOKEN>.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return HttpResponse("That is not the metrics token.\n", status=403, content_type="text/plain")
    return HttpResponse(platform_metrics_text(), content_type=CONTENT_TYPE_PLAIN_0_0_4)


# -- a team's log drain ---------------------------------------------------------------------


@login_required
def log_drain(request, team):
    """The team's Log drain page: where its logs go and how the sending
    goes, for every member; owners save (or remove, with `remove`) the
    address by POSTing here."""
    membership = member_of(request.user, team)
    if request.method != "POST":
        return render(request, "observability/log_drain.html", {
            "team": membership.team, "membership": membership, "drain": drains.drain_of(membership.team),
            "max_backlog": settings.LOG_DRAIN_MAX_BACKLOG, "batch_lines": settings.LOG_DRAIN_BATCH_LINES,
        })
    target = redirect("observability:log_drain", membership.team.name)
    if not membership.is_owner:
        messages.error(request, _("Only owners of %(team)s can change its log drain.") % {"team": membership.team.name})
        return target
    if request.POST.get("remove"):
        if drains.remove_drain(team=membership.team):
            messages.success(request, _("The log drain is removed; the team's logs are no longer sent anywhere."))
        return target
    try:
        drain = drains.set_drain(team=membership.team, url=request.POST.get("url", ""), created_by=request.user)
    except drains.DrainRefused as exc:
        messages.error(request, str(exc))
        return target
    messages.success(request, _("The team's logs are sent to %(url)s from now on.") % {"url": drain.url_shown})
    return target
