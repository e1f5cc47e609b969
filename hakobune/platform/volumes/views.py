"""The team's Volumes page: each volume with its size (as last measured),
the service that mounts it and where, the team's disk use against its quota;
developers and owners create, attach and detach, owners mark a volume safe
to share and delete one (typing its name). Viewers read; outsiders get a 404.
A service's page links here and shows its volumes."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import member_of, require
from hakobune.platform.governance.disk_quota import MIB, disk_limit_mb, team_disk_usage_by_user
from hakobune.platform.governance.quotas import QuotaExceeded
from hakobune.platform.services.models import DesiredState

from . import actions
from .models import Volume


def members_only(view):
    @login_required
    @wraps(view)
    def wrapper(request, team, *args, **kwargs):
        return view(request, member_of(request.user, team), *args, **kwargs)

    return wrapper


def _volume(membership, name):
    volume = Volume.objects.filter(team=membership.team, name=name).select_related("service").first()
    if volume is None:
        raise Http404("No such volume")
    return volume


def _services(team):
    return team.services.exclude(desired_state=DesiredState.DELETED).order_by("name")


def disk_summary(team) -> dict:
    """The team's disk use against its quota, for the page."""
    parts = team_disk_usage_by_user(team)
    used = sum(parts.values())
    limit = disk_limit_mb(team) * MIB
    return {"used_mb": round(used / MIB, 1), "limit_mb": limit // MIB, "parts": {k: round(v / MIB, 1) for k, v in parts.items()},
            "percent": min(100, round(100 * used / limit)) if limit else 100, "full": used >= limit}


@members_only
def volumes_page(request, membership):
    team = membership.team
    return render(request, "volumes/volumes.html", {
        "team": team, "volumes": Volume.objects.filter(team=team).select_related("service"),
        "services": _services(team).filter(target=actions.VOLUME_BACKEND), "disk": disk_summary(team),
        "can_change": membership.has_role(Role.DEVELOPER), "can_own": membership.has_role(Role.OWNER),
    })


def _back(request, membership):
    """To the page the form was on (a service's page, or the Volumes page)."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("volumes:page", membership.team.name)


def _done(request, membership, action, success, **kwargs):
    try:
        action(**kwargs)
    except (actions.VolumeError, QuotaExceeded) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return _back(request, membership)


@members_only
@require_POST
def volume_create(request, membership):
    require(membership, Role.DEVELOPER, "create volumes")
    name = request.POST.get("name", "").strip()
    return _done(request, membership, actions.create_volume,
                 _("%(name)s is being made; attach it to a service at a path.") % {"name": name},
                 team=membership.team, name=name, created_by=request.user)


@members_only
@require_POST
def volume_attach(request, membership, volume=None):
    require(membership, Role.DEVELOPER, "attach volumes")
    found = _volume(membership, volume or request.POST.get("volume", ""))
    service = _services(membership.team).filter(name=request.POST.get("service", "")).first()
    if service is None:
        messages.error(request, _("Choose one of the team's services."))
        return _back(request, membership)
    path = request.POST.get("path", "")
    return _done(request, membership, actions.attach,
                 _("%(volume)s is mounted in %(service)s at %(path)s from its next release.")
                 % {"volume": found.name, "service": service.name, "path": path.strip()},
                 volume=found, service=service, path=path, created_by=request.user)


@members_only
@require_POST
def volume_detach(request, membership, volume):
    require(membership, Role.DEVELOPER, "detach volumes")
    found = _volume(membership, volume)
    if found.service is None:
        messages.error(request, _("%(volume)s is not attached to a service.") % {"volume": found.name})
        return _back(request, membership)
    return _done(request, membership, actions.detach,
                 _("%(volume)s is detached from %(service)s; its data stays.")
                 % {"volume": found.name, "service": found.service.name},
                 volume=found, service=found.service, created_by=request.user)


@members_only
@require_POST
def volume_share(request, membership, volume):
    require(membership, Role.OWNER, "mark volumes safe to share")
    found = _volume(membership, volume)
    shared = request.POST.get("shared") == "1"
    said = (_("%(volume)s is marked safe to share: its service may run several instances and deploys without a gap.")
            if shared else
            _("%(volume)s is used by one instance at a time: its service deploys stop-then-start, with a short gap."))
    return _done(request, membership, actions.set_shared, said % {"volume": found.name},
                 volume=found, shared=shared, changed_by=request.user)


@members_only
@require_POST
def volume_delete(request, membership, volume):
    require(membership, Role.OWNER, "delete volumes")
    found = _volume(membership, volume)
    return _done(request, membership, actions.delete,
                 _("%(name)s and its data are being deleted.") % {"name": found.name},
                 volume=found, confirm=request.POST.get("confirm", ""), deleted_by=request.user)
