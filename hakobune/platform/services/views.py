"""The portal's pages and actions of a team's services: the dashboard, a new
service, the service page and what its team does there. The actions are in
services.py; these views find the service, call them and say what happened."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from hakobune.platform.accounts.models import Membership, Role
from hakobune.platform.accounts.permissions import member_of, teams_of
from hakobune.platform.addons import actions as addon_actions
from hakobune.platform.addons import backups
from hakobune.platform.addons.models import AddOn
from hakobune.platform.governance.quotas import addon_sizes_of, limits_of, usage_of
from hakobune.runtime.base import RuntimeBackendError
from hakobune.runtime.release_config import BUILD, get_setting

from . import jobs
from .access import service_for
from .declared_settings import value_of, values_of
from .decorators import service_action
from .forms import DeployForm, NewServiceForm, ServiceSettingsForm
from .models import DesiredState, OneOffRun, Service, with_latest_builds
from .services import (
    ServiceActionError,
    add_domain,
    create_service,
    delete_service,
    deploy_service,
    dismiss_notice,
    remove_domain,
    restart_service,
    rollback,
    process_table,
    scale,
    scale_processes,
    set_env,
    set_scale_to_zero,
    split_traffic,
    start_service,
    stop_service,
    traffic_of,
    update_settings,
    verify_domain,
)
from .uploads import upload_refusal
from hakobune.platform.volumes.rules import stays_with
from hakobune.platform.volumes.models import Volume, single_instance_volumes


@login_required
def dashboard(request):
    teams = []
    # Every team's services (and their latest builds) in one query each, not per team.
    mine = list(teams_of(request.user).select_related("policy"))
    every = with_latest_builds(
        Service.objects.filter(team__in=mine).select_related("live_release").exclude(desired_state=DesiredState.DELETED)
    )
    owned = set(Membership.objects.filter(user=request.user, role=Role.OWNER).values_list("team_id", flat=True))
    addons = addon_sizes_of(mine)
    backup_attention = backups.attention_of_teams(mine)
    for team in mine:
        services = []
        found = [service for service in every if service.team_id == team.id]
        for service in found:
            service.team = team
            latest = service.latest_build
            services.append({"service": service, "latest_build": latest, "status": service.status_word(latest)})
        teams.append({"team": team, "services": services, "usage": usage_of(team, found, addons[team.id]),
                      "limits": limits_of(team),
                      "owner": team.id in owned,
                      "backup_attention": backup_attention.get(team.id, [])})
    return render(request, "services/dashboard.html", {"teams": teams})


@login_required
def service_new(request, team):
    membership = member_of(request.user, team, Role.DEVELOPER, "create services")
    addons = list(AddOn.objects.filter(team=membership.team).exclude(
        status__in=(AddOn.Status.DELETING, AddOn.Status.FAILED)))
    if request.method != "POST":
        return _new_service_page(request, NewServiceForm(addons=addons), membership)
    form = NewServiceForm(request.POST, request.FILES, addons=addons)  # reading the upload notes a refusal
    refusal = upload_refusal(request)
    if refusal:
        form = NewServiceForm(initial={"name": request.POST.get("name", "")}, addons=addons)
        form.refusal = refusal
        return _new_service_page(request, form, membership)
    if not form.is_valid():
        return _new_service_page(request, form, membership)
    data = form.cleaned_data
    from_git = data["source_kind"] == "git"
    try:
        service = create_service(
            team=membership.team,
            name=data["name"],
            created_by=request.user,
            source_subdir=data["source_subdir"],
            git_url=data["git_url"] if from_git else "",
            git_ref=data["git_ref"] if from_git else "",
            git_token=data["git_token"] if from_git else "",
            git_submodules=from_git and data["git_submodules"],
            **({"target": data["target"]} if data.get("target") else {}),
        )
    except (ServiceActionError, ValidationError) as exc:
        form.add_error("name", exc.messages[0] if isinstance(exc, ValidationError) else str(exc))
        return _new_service_page(request, form, membership)
    for addon in (addon for addon in addons if addon.name in data["addons"]):
        try:
            addon_actions.attach(addon=addon, service=service, created_by=request.user)
        except addon_actions.AddOnError as exc:
            messages.error(request, str(exc))
    deploy_service(service=service, source_file=None if from_git else data["source"], created_by=request.user)
    return redirect("services:detail", team=team, service=service.name)


def _new_service_page(request, form, membership):
    return render(request, "services/service_new.html", {"form": form, "team": membership.team})


@login_required
def service_detail(request, team, service):
    membership, service = service_for(request.user, team, service)
    builds = list(service.builds.all()[:10])
    latest = builds[0] if builds else None
    releases = list(service.releases.select_related("build")[:10])
    traffic_error = _mark_traffic(service, releases)
    return render(
        request,
        "services/service_detail.html",
        {
            "membership": membership,
            "service": service,
            "builds": builds,
            "build": latest,
            "log_lines": latest.log_page() if latest else [],
            "releases": releases,
            "traffic_error": traffic_error,
            "processes": process_table(service),
            "jobs": jobs.history(service, runs_per_job=5),
            "one_off_runs": OneOffRun.objects.filter(service=service).select_related("release")[:10],
            "settings_form": ServiceSettingsForm(service=service, initial=values_of(service)),
            "status": service.status_word(latest),
            "deploy_form": DeployForm(),
            "webhook_url": request.build_absolute_uri(reverse("services:git_webhook", args=[service.webhook_id])),
            "deliveries": service.webhook_deliveries.all()[:5],
            "backup_attention": [(addon.name, why) for addon in backups.with_backup_state(service.addons.all())
                                 if (why := backups.needs_attention(addon))],
            "volumes": list(service.volumes.all()),
            "free_volumes": Volume.objects.filter(team=service.team, service__isnull=True).exclude(
                status__in=[Volume.Status.DELETING, Volume.Status.FAILED]),
            "kept": stays_with(service),
            "volumes_single": bool(single_instance_volumes(service)),
            # What the newest detected plan found: SQLite files the app cannot keep here.
            "sqlite_files": next(((b.plan or {}).get("sqlite_files") or [] for b in builds if b.plan), []),
        },
    )


def _mark_traffic(service, releases) -> str:
    """Where the runtime splits traffic between revisions: each release's
    share of the requests now, as `release.traffic` (the newest release of a
    revision carries its share). Returns what went wrong asking, if anything."""
    for release in releases:
        release.traffic = None
    try:
        shares = traffic_of(service, releases)
    except ServiceActionError:
        return ""
    except RuntimeBackendError as exc:
        return exc.message
    for release in releases:
        release.traffic = shares.get(release.number)
    return ""


@service_action(doing="deploy")
def service_deploy(request, service):
    form = DeployForm(request.POST, request.FILES)  # reading the upload notes a refusal
    refusal = upload_refusal(request)
    if refusal:
        raise ServiceActionError(refusal)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return None
    deploy_service(
        service=service,
        source_file=form.cleaned_data["source"] or None,
        git_ref=form.cleaned_data["git_ref"],
        created_by=request.user,
    )
    return _("Deploy started.")


@service_action()
def release_rollback(request, service, number):
    target = get_object_or_404(service.releases, number=number)
    release = rollback(service=service, to_release=target, created_by=request.user)
    return _("Rolling back to v%(target)s as v%(number)s; no rebuild needed.") % {"target": target.number, "number": release.number}


@service_action()
def service_scale(request, service):
    instances = _whole_number(
        request.POST.get("instances", ""), _("Give the number of instances as a whole number from %(min)s to %(max)s.") % {
            "min": get_setting("instances").min, "max": get_setting("instances").max}
    )
    scale(service=service, instances=instances, created_by=request.user)
    return ngettext("Scaling to %(count)s instance.", "Scaling to %(count)s instances.", instances) % {"count": instances}


@service_action()
def service_processes(request, service):
    """The Run card's process table: instances of each process type at once."""
    counts = {}
    for row in process_table(service):
        value = request.POST.get(f"count_{row['name']}", "").strip()
        if value and value != str(row["instances"]):
            counts[row["name"]] = value
    if not counts:
        return _("Nothing to change.")
    scale_processes(service=service, counts=counts, created_by=request.user)
    return _("Scaling %(counts)s.") % {"counts": ", ".join(f"{name}={value}" for name, value in counts.items())}


@service_action()
def service_settings(request, service):
    """Resources, port and health check (a new release of the live image), and
    the start and build commands (from the next deploy)."""
    form = ServiceSettingsForm(request.POST, service=service)
    if not form.is_valid():
        for field, errors in form.errors.items():
            for error in errors:
                messages.error(request, _("%(field)s: %(error)s") % {
                    "field": form.fields[field].label if field in form.fields else field, "error": error})
        return None
    data = form.cleaned_data
    build_changed = any(
        value_of(service, name) != data[name] for name in data if get_setting(name).stage == BUILD
    )
    release = update_settings(service=service, created_by=request.user, **data)
    said = []
    if release is not None:
        said.append(_("v%(number)s starts with the new settings") % {"number": release.number})
    if build_changed:
        said.append(_("the build settings apply from the next deploy"))
    return _("Saved: %(what)s.") % {"what": _("; ").join(said)} if said else _("Saved.")


@service_action()
def service_domains(request, service):
    hostname = request.POST.get("hostname", "")
    if request.POST.get("remove"):
        remove_domain(service=service, hostname=hostname, created_by=request.user)
        return _("%(hostname)s no longer leads to %(service)s.") % {"hostname": hostname, "service": service.name}
    if request.POST.get("verify"):
        domain = verify_domain(service=service, hostname=hostname, created_by=request.user)
        return _("%(hostname)s is verified: it leads to %(service)s once its DNS points at this host.") % {"hostname": domain.hostname, "service": service.name}
    domain = add_domain(service=service, hostname=hostname, created_by=request.user)
    return _("Added %(hostname)s. To prove it is yours, add a TXT record named %(name)s "
             "with the value %(value)s, then press Verify.") % {
        "hostname": domain.hostname, "name": domain.txt_name, "value": domain.txt_value}


@service_action(need=Role.OWNER)
def service_notice(request, service):
    dismiss_notice(service=service, created_by=request.user)
    return _("Noted.")


@service_action()
def service_restart(request, service):
    """Restarts the live release's instances one by one (a new release of the
    same image, so the old instances serve until the new ones answer)."""
    release = restart_service(service=service, created_by=request.user)
    return _("Restarting as v%(number)s; the running instances serve until it answers.") % {"number": release.number}


@service_action()
def service_sleep_settings(request, service):
    idle_minutes = _whole_number(request.POST.get("idle_minutes") or service.idle_minutes,
                                 _("Give the idle minutes as a whole number."))
    set_scale_to_zero(service=service, enabled=request.POST.get("scale_to_zero") == "on",
                      idle_minutes=idle_minutes, created_by=request.user)
    return _("Saved.")


@service_action()
def service_power(request, service, action):
    if action == "stop":
        stop_service(service=service, created_by=request.user)
        return _("Stopped. Its address answers again when you start it.")
    start_service(service=service, created_by=request.user)
    return _("Started.")


@service_action(need=Role.OWNER, doing="delete a service")
def service_delete(request, service):
    confirm = request.POST.get("confirm", request.POST.get("confirm_name", ""))
    delete_service(service=service, confirm=confirm, created_by=request.user)
    messages.success(request, _("%(name)s is being deleted: its instances, address and images.") % {"name": service.name})
    return redirect("services:dashboard")


@service_action(anchor="env")
def service_env(request, service):
    """Sets one variable (key, value) or unsets one (unset=key)."""
    key = (request.POST.get("unset") or request.POST.get("key") or "").strip()
    secret = request.POST.get("secret", "").strip()
    if request.POST.get("unset"):
        release = set_env(service=service, values={}, unset=[key], created_by=request.user)
        done = _("%(key)s is unset") % {"key": key}
    elif secret:
        if request.POST.get("value"):
            raise ServiceActionError(_("Give %(key)s a value or a secret, not both.") % {"key": key})
        release = set_env(service=service, values={}, unset=[], secrets={key: secret}, created_by=request.user)
        done = _("%(key)s comes from Secret Manager") % {"key": key}
    else:
        release = set_env(service=service, values={key: request.POST.get("value", "")}, unset=[], created_by=request.user)
        done = _("%(key)s is set") % {"key": key}
    if release:
        return _("%(done)s; v%(number)s applies it.") % {"done": done, "number": release.number}
    return _("%(done)s.") % {"done": done}


@service_action()
def service_traffic(request, service):
    """Splits requests between releases by percentage (fields v<number>)."""
    percents = {
        int(key[1:]): _whole_number(value or 0, _("Give %(key)s's share as a whole number of percent.") % {"key": key})
        for key, value in request.POST.items()
        if key.startswith("v") and key[1:].isdigit()
    }
    split_traffic(service=service, percents=percents, created_by=request.user)
    shares = _(", ").join(_("%(percent)s%% to v%(number)s") % {"percent": p, "number": n}
                          for n, p in sorted(percents.items()) if p)
    return _("Requests now go %(shares)s.") % {"shares": shares}


def _whole_number(value, refusal: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ServiceActionError(refusal) from None
