"""The portal's pages and actions of a team's services: the dashboard, a new
service, the service page and what its team does there. The actions are in
services.py; these views find the service, call them and say what happened."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import member_of, teams_of
from hakobune.platform.governance.quotas import limits_of, usage_of
from hakobune.runtime.base import RuntimeBackendError

from .access import service_for
from .forms import DeployForm, NewServiceForm, ServiceSettingsForm
from .models import DesiredState, Service
from .services import (
    ServiceActionError,
    add_domain,
    create_service,
    delete_service,
    deploy_service,
    remove_domain,
    restart_service,
    rollback,
    scale,
    set_env,
    set_scale_to_zero,
    split_traffic,
    start_service,
    stop_service,
    traffic_of,
    update_settings,
)
from .uploads import upload_refusal


@login_required
def dashboard(request):
    teams = []
    for team in teams_of(request.user):
        services = []
        for service in team.services.select_related("live_release").exclude(desired_state=DesiredState.DELETED):
            latest = service.builds.first()
            services.append({"service": service, "latest_build": latest, "status": service.status_word(latest)})
        teams.append({"team": team, "services": services, "usage": usage_of(team), "limits": limits_of(team)})
    return render(request, "services/dashboard.html", {"teams": teams})


@login_required
def service_new(request, team):
    membership = member_of(request.user, team, Role.DEVELOPER, "create services")
    posted = request.method == "POST"
    form = NewServiceForm(request.POST if posted else None, request.FILES if posted else None)
    refusal = upload_refusal(request)
    if posted and refusal:
        form = NewServiceForm(initial={"name": request.POST.get("name", "")})
        form.refusal = refusal
    elif request.method == "POST" and form.is_valid():
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
        else:
            deploy_service(service=service, source_file=None if from_git else data["source"], created_by=request.user)
            return redirect("services:detail", team=team, service=service.name)
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
            "is_owner": membership.is_owner,
            "settings_form": ServiceSettingsForm(service=service, initial={
                "cpu": service.cpu, "memory_mb": service.memory_mb, "port": service.port,
                "health_check_path": service.health_check_path, "public": service.public,
                "start_command": service.start_command,
                "build_command": service.build_command,
                "cloud_builder": service.cloud_builder,
                "min_instances": service.min_instances, "max_instances": service.max_instances,
                "concurrency": service.concurrency, "request_timeout": service.request_timeout,
                "ingress": service.ingress,
            }),
            "status": service.status_word(latest),
            "deploy_form": DeployForm(),
            "webhook_url": request.build_absolute_uri(reverse("services:git_webhook", args=[service.webhook_id])),
            "deliveries": service.webhook_deliveries.all()[:5],
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


@login_required
@require_POST
def service_deploy(request, team, service):
    _, service = service_for(request.user, team, service, Role.DEVELOPER, "deploy")
    form = DeployForm(request.POST, request.FILES)
    refusal = upload_refusal(request)
    if refusal:
        messages.error(request, refusal)
    elif form.is_valid():
        try:
            deploy_service(
                service=service,
                source_file=form.cleaned_data["source"] or None,
                git_ref=form.cleaned_data["git_ref"],
                created_by=request.user,
            )
        except ServiceActionError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Deploy started.")
    else:
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
    return redirect("services:detail", team=team, service=service.name)


@login_required
@require_POST
def release_rollback(request, team, service, number):
    _, service = service_for(request.user, team, service, Role.DEVELOPER)
    target = get_object_or_404(service.releases, number=number)
    try:
        release = rollback(service=service, to_release=target, created_by=request.user)
    except ServiceActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Rolling back to v{target.number} as v{release.number}; no rebuild needed.")
    return redirect("services:detail", team=team, service=service.name)


@login_required
@require_POST
def service_scale(request, team, service):
    _, service = service_for(request.user, team, service, Role.DEVELOPER)
    try:
        instances = int(request.POST.get("instances", ""))
        scale(service=service, instances=instances, created_by=request.user)
    except ValueError:
        messages.error(request, "Give the number of instances as a whole number from 1 to 10.")
    except ServiceActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Scaling to {instances} instance{'s' if instances != 1 else ''}.")
    return redirect("services:detail", team=team, service=service.name)


@login_required
@require_POST
def service_settings(request, team, service):
    """Resources, port and health check (a new release of the live image), and
    the start and build commands (from the next deploy)."""
    _, service = service_for(request.user, team, service, Role.DEVELOPER)
    form = ServiceSettingsForm(request.POST, service=service)
    if not form.is_valid():
        for field, errors in form.errors.items():
            for error in errors:
                messages.error(request, f"{form.fields[field].label if field in form.fields else field}: {error}")
        return redirect("services:detail", team=team, service=service.name)
    data = form.cleaned_data
    commands = {"start_command": data["start_command"].strip(), "build_command": data["build_command"].strip()}
    if "cloud_builder" in data:
        commands["cloud_builder"] = data["cloud_builder"]
    commands_changed = any(getattr(service, name) != value for name, value in commands.items())
    Service.objects.filter(id=service.id).update(**commands)
    try:
        scaling = {
            name: data[name] for name in ("min_instances", "max_instances", "concurrency", "request_timeout", "ingress")
            if name in data
        }
        release = update_settings(
            service=service, created_by=request.user, cpu=data["cpu"], memory_mb=data["memory_mb"],
            port=data["port"], health_check_path=data["health_check_path"], public=data["public"], **scaling,
        )
    except ServiceActionError as exc:
        messages.error(request, str(exc))
    else:
        said = []
        if release is not None:
            said.append(f"v{release.number} starts with the new settings")
        if commands_changed:
            said.append("the build settings apply from the next deploy")
        messages.success(request, "Saved" + (f": {'; '.join(said)}." if said else "."))
    return redirect("services:detail", team=team, service=service.name)


@login_required
@require_POST
def service_domains(request, team, service):
    _, service = service_for(request.user, team, service, Role.DEVELOPER)
    hostname = request.POST.get("hostname", "")
    try:
        if request.POST.get("remove"):
            remove_domain(service=service, hostname=hostname, created_by=request.user)
            messages.success(request, f"{hostname} no longer leads to {service.name}.")
        else:
            domain = add_domain(service=service, hostname=hostname, created_by=request.user)
            messages.success(request, f"{domain.hostname} now leads to {service.name} once its DNS points at this host.")
    except ServiceActionError as exc:
        messages.error(request, str(exc))
    return redirect("services:detail", team=team, service=service.name)


@login_required
@require_POST
def service_restart(request, team, service):
    """Restarts the live release's instances one by one (a new release of the
    same image, so the old instances serve until the new ones answer)."""
    _, service = service_for(request.user, team, service, Role.DEVELOPER)
    try:
        release = restart_service(service=service, created_by=request.user)
    except ServiceActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Restarting as v{release.number}; the running instances serve until it answers.")
    return redirect("services:detail", team=team, service=service.name)


@login_required
@require_POST
def service_sleep_settings(request, team, service):
    _, service = service_for(request.user, team, service, Role.DEVELOPER)
    try:
        idle_minutes = int(request.POST.get("idle_minutes") or service.idle_minutes)
        set_scale_to_zero(service=service, enabled=request.POST.get("scale_to_zero") == "on",
                          idle_minutes=idle_minutes, created_by=request.user)
    except ValueError:
        messages.error(request, "Give the idle minutes as a whole number.")
    except (ServiceActionError, RuntimeBackendError) as exc:
        messages.error(request, getattr(exc, "message", None) or str(exc))
    else:
        messages.success(request, "Saved.")
    return redirect("services:detail", team=team, service=service.name)


@login_required
@require_POST
def service_power(request, team, service, action):
    _, service = service_for(request.user, team, service, Role.DEVELOPER)
    try:
        if action == "stop":
            stop_service(service=service, created_by=request.user)
            messages.success(request, "Stopped. Its address answers again when you start it.")
        else:
            start_service(service=service, created_by=request.user)
            messages.success(request, "Started.")
    except RuntimeBackendError as exc:
        messages.error(request, exc.message)
    return redirect("services:detail", team=team, service=service.name)


@login_required
@require_POST
def service_delete(request, team, service):
    _, service = service_for(request.user, team, service, Role.OWNER, "delete a service")
    if request.POST.get("confirm_name") != service.name:
        messages.error(request, f"Type the service's name, {service.name}, to delete it.")
        return redirect("services:detail", team=team, service=service.name)
    delete_service(service=service, created_by=request.user)
    messages.success(request, f"{service.name} is being deleted: its instances, address and images.")
    return redirect("services:dashboard")


@login_required
@require_POST
def service_env(request, team, service):
    """Sets one variable (key, value) or unsets one (unset=key)."""
    _, service = service_for(request.user, team, service, Role.DEVELOPER)
    key = (request.POST.get("unset") or request.POST.get("key") or "").strip()
    try:
        if request.POST.get("unset"):
            release = set_env(service=service, values={}, unset=[key], created_by=request.user)
            done = f"{key} is unset"
        elif request.POST.get("secret", "").strip():
            if request.POST.get("value"):
                raise ServiceActionError(f"Give {key} a value or a secret, not both.")
            secret = request.POST["secret"].strip()
            release = set_env(service=service, values={}, unset=[], secrets={key: secret}, created_by=request.user)
            done = f"{key} comes from Secret Manager"
        else:
            release = set_env(service=service, values={key: request.POST.get("value", "")}, unset=[], created_by=request.user)
            done = f"{key} is set"
    except ServiceActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{done}{f'; v{release.number} applies it' if release else ''}.")
    return redirect(reverse("services:detail", args=[team, service.name]) + "#env")


@login_required
@require_POST
def service_traffic(request, team, service):
    """Splits requests between releases by percentage (fields v<number>)."""
    _, service = service_for(request.user, team, service, Role.DEVELOPER)
    percents = {}
    for key, value in request.POST.items():
        if key.startswith("v") and key[1:].isdigit():
            try:
                percents[int(key[1:])] = int(value or 0)
            except ValueError:
                messages.error(request, f"Give {key}'s share as a whole number of percent.")
                return redirect("services:detail", team=team, service=service.name)
    try:
        split_traffic(service=service, percents=percents, created_by=request.user)
    except ServiceActionError as exc:
        messages.error(request, str(exc))
    else:
        shares = ", ".join(f"{p}% to v{n}" for n, p in sorted(percents.items()) if p)
        messages.success(request, f"Requests now go {shares}.")
    return redirect("services:detail", team=team, service=service.name)


