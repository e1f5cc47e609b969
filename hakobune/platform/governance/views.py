"""Staff: each team's quota and usage, the queue of services waiting for
review, with what each would run, and the host's disk (what pruning keeps and
freed) and housekeeping (metrics collections, and those skipped)."""

import redis

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from hakobune.platform.accounts import networks
from hakobune.platform.accounts.models import Team
from hakobune.platform.addons import actions as addon_actions
from hakobune.platform.addons.models import AddOn, Kind
from hakobune.platform.accounts.permissions import staff_or_403
from hakobune.platform.builds import disk
from hakobune.platform.observability import collectors
from hakobune.platform.observability.events import record_event
from hakobune.platform.queue import enqueue_on_commit
from hakobune.platform.services.models import Service

from .disk_quota import MIB, disk_limit_mb, team_disk_usage
from .forms import TeamPolicyForm
from .models import ServiceReview, TeamPolicy
from .quotas import limits_of, usage_of
from .reviews import ReviewError, approve, reject, review_required


@login_required
def governance_page(request):
    staff_or_403(request.user, "set quotas and review services")
    pending = (
        ServiceReview.objects.filter(status=ServiceReview.Status.PENDING)
        .select_related("service__team")
        .order_by("requested_at")
    )
    queue = [{"review": review, "build": review.service.builds.first()} for review in pending]
    teams = [
        {"team": team, "usage": usage_of(team), "limits": limits_of(team), "review": review_required(team),
         "own": TeamPolicy.objects.filter(team=team).exists()}
        for team in Team.objects.order_by("name")
    ]
    recent = ServiceReview.objects.exclude(status=ServiceReview.Status.PENDING).select_related(
        "service__team", "reviewed_by"
    ).order_by("-reviewed_at")[:10]
    return render(request, "governance/governance.html", {
        "queue": queue, "teams": teams, "recent": recent, "review_default": settings.REVIEW_NEW_SERVICES,
    })


@login_required
def team_policy(request, team):
    staff_or_403(request.user, "set quotas and review services")
    team = get_object_or_404(Team, name=team)
    policy = TeamPolicy.objects.filter(team=team).first() or TeamPolicy(team=team)
    defaults = {"max_services": settings.TEAM_MAX_SERVICES, "max_cpu": settings.TEAM_MAX_CPU,
                "max_memory_mb": settings.TEAM_MAX_MEMORY_MB, "max_disk_mb": settings.TEAM_MAX_DISK_MB}
    form = TeamPolicyForm(request.POST or None, instance=policy, defaults=defaults)
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        saved.updated_by = request.user
        saved.save()
        if form.changed_data:
            record_event("team.policy_changed", team=team, actor=request.user, fields=form.changed_data)
        said = _("Saved team %(team)s's quota. Services that already hold more keep running; "
                 "they cannot grow until they are under it.") % {"team": team}
        if "allowed_networks" in form.changed_data:
            enqueue_on_commit("reconcile")  # the firewall takes the new allow-list now
            said += " " + _("The private networks it may reach change within seconds.")
        messages.success(request, said)
        if networks.too_small(team):
            # The page says by how much, and offers the move.
            return redirect("governance:team_policy", team=team.name)
        return redirect("governance:quotas")
    return render(request, "governance/team_policy.html", {
        "team": team, "form": form, "usage": usage_of(team), "limits": limits_of(team),
        "external_addons": AddOn.objects.filter(team=team).exclude(external_url_encrypted="")
        .prefetch_related("services"),
        "addon_kinds": Kind.choices,
        "disk_used_mb": f"{team_disk_usage(team) / MIB:.1f}", "disk_limit_mb": disk_limit_mb(team),
        "network": _network_words(team),
    })


def _network_words(team) -> dict | None:
    """When the team's network block holds fewer instances than its quota
    allows: the sentence that says so, and whether a move is offered."""
    short = networks.too_small(team)
    if short is None:
        return None
    said = _("Team %(team)s's network block %(subnet)s holds %(holds)s instances (with room to start each again "
             "beside itself during a deploy), but its quota now allows %(allows)s: its deploys will fail with "
             "\"network full\" once the block fills.") % {"team": team.name, **short}
    if short["larger"]:
        said += " " + _("Moving it to a larger block (a /%(prefix)s, room for %(room)s instances) stops its services "
                        "and add-ons for a few seconds, then starts them again on a new network; their data "
                        "stays.") % short
    else:
        said += " " + networks.grow_refusal(team)
    return {"said": said, "offer": short["larger"] and not networks.moving_to(team)}


@login_required
@require_POST
def team_external_addon(request, team):
    """Staff enter an external database's URL for a team (Cloud SQL, a managed
    Redis: Hakobune creates neither), which its members attach like an add-on,
    to services on Cloud Run too; or remove one (typing its name)."""
    staff_or_403(request.user, "enter external databases")
    team = get_object_or_404(Team, name=team)
    try:
        if request.POST.get("remove"):
            addon = get_object_or_404(AddOn, team=team, name=request.POST["remove"])
            if not addon.external:
                raise Http404("No such external database")
            addon_actions.delete(addon=addon, confirm=request.POST.get("confirm", "").strip(), deleted_by=request.user)
            messages.success(request, _("%(name)s is removed; the database itself is untouched.") % {"name": addon.name})
        else:
            addon = addon_actions.add_external(team=team, kind=request.POST.get("kind", ""),
                                               name=request.POST.get("name", "").strip(),
                                               url=request.POST.get("url", ""), created_by=request.user)
            messages.success(request, _("%(name)s is entered for team %(team)s; its members attach it to their "
                                        "services on the Add-ons page.") % {"name": addon.name, "team": team.name})
    except addon_actions.AddOnError as exc:
        messages.error(request, str(exc))
    return redirect("governance:team_policy", team.name)


@login_required
@require_POST
def grow_network(request, team):
    staff_or_403(request.user, "set quotas and review services")
    team = get_object_or_404(Team, name=team)
    why = networks.grow_refusal(team)
    if why:
        messages.error(request, why)
    else:
        enqueue_on_commit("grow_team_network", team.id, request.user.id)
        messages.success(request, _("Moving team %(team)s to a larger network block: its services answer again "
                                    "within a minute. The team's events say when it is done.") % {"team": team.name})
    return redirect("governance:team_policy", team=team.name)


@login_required
@require_POST
def review_service(request, service_id, decision):
    staff_or_403(request.user, "set quotas and review services")
    if decision not in ("approve", "reject"):
        raise Http404("Approve or reject.")
    service = get_object_or_404(Service.objects.select_related("team"), id=service_id)
    note = request.POST.get("note", "")
    try:
        if decision == "approve":
            released = approve(service=service, by=request.user, note=note)
            messages.success(request, _("Approved %(service)s.") % {"service": service} + (" " + _("Its deploy goes on now.") if released else ""))
        else:
            reject(service=service, by=request.user, note=note)
            messages.success(request, _("Did not approve %(service)s; the team sees why.") % {"service": service})
    except ReviewError as exc:
        messages.error(request, str(exc))
    return redirect("governance:quotas")


@login_required
def disk_page(request):
    staff_or_403(request.user, "see the host's disk")
    report = disk.usage_report()
    for space in report["spaces"]:
        space["what"] = _place_words(space["what"])
    return render(request, "governance/disk.html", {
        "report": report, "collection": _collection_health(), "metrics_seconds": settings.METRICS_SECONDS,
    })


def _collection_health() -> dict:
    """The metrics collections: the last one, and how many were skipped
    because the one before was still running (counted in Redis)."""
    try:
        health = collectors.collection_health()
    except redis.RedisError as exc:
        return {"error": str(exc)}
    last = health.get("last")
    if last and last.get("at"):
        last = {**last, "at": parse_datetime(last["at"])}
    return {"skipped": health["skipped"], "last": last}


# What each watched file system holds (builds/disk.py names them in English).
PLACES = {
    "the build workspace": gettext_lazy("the build workspace"),
    "the uploads and source snapshots": gettext_lazy("the uploads and source snapshots"),
    "Hakobune's data folder": gettext_lazy("Hakobune's data folder"),
    "the Docker Engine's data root (images and build cache)": gettext_lazy("the Docker Engine's data root (images and build cache)"),
}


def _place_words(what: str) -> str:
    """"the disk that holds A, B and C" in the reader's language."""
    found = sorted((what.find(name), words) for name, words in PLACES.items() if name in what)
    if not found:
        return what
    return _("the disk that holds %(places)s") % {"places": _(", ").join(str(words) for _at, words in found)}


@login_required
@require_POST
def prune_now(request):
    staff_or_403(request.user, "prune images")
    enqueue_on_commit("prune_images")
    messages.success(request, _("Pruning now; this page shows what it freed once it is done (reload in a minute)."))
    return redirect("governance:disk")
