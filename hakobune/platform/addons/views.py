"""The team's Add-ons page: each add-on with its kind, version, status, size
and the services it is attached to; developers and owners create, attach and
detach, owners delete (typing its name). Viewers read; outsiders get a 404.
Passwords are never shown: the URL is given with the password masked."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import member_of, require
from hakobune.platform.governance.quotas import QuotaExceeded
from hakobune.platform.services.models import DesiredState

from . import actions
from .models import AddOn, Kind


def members_only(view):
    @login_required
    @wraps(view)
    def wrapper(request, team, *args, **kwargs):
        return view(request, member_of(request.user, team), *args, **kwargs)

    return wrapper


def _addon(membership, name):
    addon = AddOn.objects.filter(team=membership.team, name=name).first()
    if addon is None:
        raise Http404("No such add-on")
    return addon


def _services(team):
    return team.services.exclude(desired_state=DesiredState.DELETED).order_by("name")


@members_only
def addons_page(request, membership):
    team = membership.team
    addons = list(AddOn.objects.filter(team=team).prefetch_related("services"))
    for addon in addons:
        addon.attached = [s for s in addon.services.all() if s.desired_state != DesiredState.DELETED]
    return render(request, "addons/addons.html", {
        "team": team, "addons": addons, "kinds": Kind.choices, "services": _services(team),
        "can_change": membership.has_role(Role.DEVELOPER), "can_delete": membership.has_role(Role.OWNER),
    })


def _done(request, membership, action, success, **kwargs):
    try:
        action(**kwargs)
    except (actions.AddOnError, QuotaExceeded) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return redirect("addons:page", membership.team.name)


@members_only
@require_POST
def addon_create(request, membership):
    require(membership, Role.DEVELOPER, "create add-ons")
    kind, name = request.POST.get("kind", ""), request.POST.get("name", "").strip()
    return _done(request, membership, actions.create_addon,
                 _("%(name)s is starting; attach it to a service to give it its URL.") % {"name": name or kind},
                 team=membership.team, kind=kind, name=name, created_by=request.user)


@members_only
@require_POST
def addon_attach(request, membership, addon):
    require(membership, Role.DEVELOPER, "attach add-ons")
    found = _addon(membership, addon)
    service = _services(membership.team).filter(name=request.POST.get("service", "")).first()
    if service is None:
        messages.error(request, _("Choose one of the team's services."))
        return redirect("addons:page", membership.team.name)
    return _done(request, membership, actions.attach,
                 _("%(addon)s is attached to %(service)s, which gets %(key)s in a new release.")
                 % {"addon": found.name, "service": service.name, "key": found.env_key},
                 addon=found, service=service, created_by=request.user)


@members_only
@require_POST
def addon_detach(request, membership, addon, service):
    require(membership, Role.DEVELOPER, "detach add-ons")
    found = _addon(membership, addon)
    attached = _services(membership.team).filter(name=service).first()
    if attached is None:
        raise Http404("No such service")
    return _done(request, membership, actions.detach,
                 _("%(addon)s is detached from %(service)s; its data stays.")
                 % {"addon": found.name, "service": attached.name},
                 addon=found, service=attached, created_by=request.user)


@members_only
@require_POST
def addon_delete(request, membership, addon):
    require(membership, Role.OWNER, "delete add-ons")
    found = _addon(membership, addon)
    said = (_("%(name)s is removed; the database itself is untouched.") if found.external
            else _("%(name)s and its data are being deleted.")) % {"name": found.name}
    return _done(request, membership, actions.delete, said,
                 addon=found, confirm=request.POST.get("confirm", "").strip(), deleted_by=request.user)
