"""The team's Add-ons page: each add-on with its kind, version, status, size
and the services it is attached to; developers and owners create, attach and
detach, owners delete (typing its name). Viewers read; outsiders get a 404.
Passwords are never shown: the URL is given with the password masked."""

import shutil
import tempfile
from functools import wraps
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import member_of, require
from hakobune.platform.governance.quotas import QuotaExceeded
from hakobune.platform.services.models import DesiredState

from . import actions, backups
from .backup_store import StoreError, store_for
from .models import AddOn, Backup, Kind


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
    addons = list(backups.with_backup_state(AddOn.objects.filter(team=team)).prefetch_related("services"))
    for addon in addons:
        addon.attached = [s for s in addon.services.all() if s.desired_state != DesiredState.DELETED]
        addon.recent_backups = list(addon.backups.prefetch_related("restores__addon")[:10])
        addon.backup_state = backups.schedule_of(addon)
        addon.backup_attention = backups.needs_attention(addon)
    return render(request, "addons/addons.html", {
        "team": team, "addons": addons, "kinds": Kind.choices, "services": _services(team),
        "can_change": membership.has_role(Role.DEVELOPER), "can_delete": membership.has_role(Role.OWNER),
    })


def _done(request, membership, action, success, anchor: str = "", **kwargs):
    try:
        action(**kwargs)
    except (actions.AddOnError, backups.BackupError, QuotaExceeded) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    response = redirect("addons:page", membership.team.name)
    if anchor:
        response["Location"] += f"#{anchor}"
    return response


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


def _backup(addon, backup_id):
    backup = Backup.objects.filter(addon=addon, id=backup_id).select_related("addon__team").first()
    if backup is None:
        raise Http404("No such backup")
    return backup


@members_only
@require_POST
def backup_create(request, membership, addon):
    require(membership, Role.DEVELOPER, "back up add-ons")
    found = _addon(membership, addon)
    return _done(request, membership, backups.create_backup,
                 _("A backup of %(name)s is being made; it is verified by a restore before it counts.")
                 % {"name": found.name}, anchor=f"backups-{found.name}", addon=found, created_by=request.user)


@members_only
@require_POST
def backup_schedule(request, membership, addon):
    require(membership, Role.DEVELOPER, "change backup schedules")
    found = _addon(membership, addon)
    try:
        retention = int(request.POST.get("retention", found.backup_retention))
    except ValueError:
        messages.error(request, _("Keep a number of backups, between 1 and 365."))
        return redirect("addons:page", membership.team.name)
    return _done(request, membership, backups.set_schedule, _("The backup schedule of %(name)s is saved.")
                 % {"name": found.name}, anchor=f"backups-{found.name}", addon=found,
                 schedule=request.POST.get("schedule", ""), retention=retention, changed_by=request.user)


@members_only
@require_POST
def backup_restore(request, membership, addon, backup_id):
    found = _addon(membership, addon)
    new_addon = request.POST.get("new_addon", "").strip()
    if new_addon:
        require(membership, Role.DEVELOPER, "restore backups")
    else:
        require(membership, Role.OWNER, "restore backups into the add-on (replacing its data)")
    backup = _backup(found, backup_id)
    target = new_addon or found.name
    return _done(request, membership, backups.restore,
                 _("Backup %(id)s is being restored into %(target)s.") % {"id": backup.id, "target": target},
                 anchor=f"backups-{found.name}", backup=backup, confirm=request.POST.get("confirm", "").strip(),
                 new_addon=new_addon or None, created_by=request.user)


@members_only
def backup_download(request, membership, addon, backup_id):
    require(membership, Role.DEVELOPER, "download backups")
    backup = _backup(_addon(membership, addon), backup_id)
    if backup.status != Backup.Status.VERIFIED or not backup.location:
        raise Http404("No such backup")
    folder = Path(tempfile.mkdtemp())
    try:
        path = folder / "backup"
        store_for(backup.storage, backup.bucket).get(backup.location, path)
        handle = open(path, "rb")
    except StoreError as exc:
        messages.error(request, str(exc))
        return redirect("addons:page", membership.team.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    name = f"{membership.team.name}-{backup.addon.name}-{backup.id}.{backup.location.rsplit('.', 1)[-1]}"
    return FileResponse(handle, as_attachment=True, filename=name, content_type="application/octet-stream")
