from pathlib import PurePosixPath

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import member_of, staff_or_403, teams_of
from hakobune.platform.builds.models import Build
from hakobune.runtime.base import RuntimeBackendError, ServiceRef

from hakobune.platform.governance.quotas import limits_of, usage_of

from .access import service_for
from .backends import backend_for
from .forms import DeployForm, NewServiceForm, ServiceSettingsForm
from .models import DesiredState, Service
from .services import (
    ServiceActionError,
    create_service,
    delete_service,
    deploy_service,
    redeploy_build,
    rollback,
    scale,
    set_env,
    add_domain,
    remove_domain,
    restart_service,
    set_scale_to_zero,
    update_settings,
    start_service,
    stop_service,
    traffic_of,
)
from .uploads import upload_refusal
from .webhooks import receive_push

LOG_PAGE_LINES = 2000


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
            return redirect("service_detail", team=team, service=service.name)
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
            "log_lines": _log_lines(latest),
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
            "webhook_url": request.build_absolute_uri(reverse("git_webhook", args=[service.webhook_id])),
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
    return redirect("service_detail", team=team, service=service.name)


@login_required
@require_POST
def build_redeploy(request, team, service, number):
    """Builds and deploys an earlier deploy's source snapshot again."""
    _, service = service_for(request.user, team, service, Role.DEVELOPER, "deploy")
    build = get_object_or_404(Build, service=service, number=number)
    try:
        new = redeploy_build(build=build, created_by=request.user)
    except ServiceActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Deploying the source of #{build.number} again, as #{new.number}.")
    return redirect("service_detail", team=team, service=service.name)


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
    return redirect("service_detail", team=team, service=service.name)


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
    return redirect("service_detail", team=team, service=service.name)


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
        return redirect("service_detail", team=team, service=service.name)
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
    return redirect("service_detail", team=team, service=service.name)


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
    return redirect("service_detail", team=team, service=service.name)


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
    return redirect("service_detail", team=team, service=service.name)


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
    return redirect("service_detail", team=team, service=service.name)


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
    return redirect("service_detail", team=team, service=service.name)


@login_required
@require_POST
def service_delete(request, team, service):
    _, service = service_for(request.user, team, service, Role.OWNER, "delete a service")
    if request.POST.get("confirm_name") != service.name:
        messages.error(request, f"Type the service's name, {service.name}, to delete it.")
        return redirect("service_detail", team=team, service=service.name)
    delete_service(service=service, created_by=request.user)
    messages.success(request, f"{service.name} is being deleted: its instances, address and images.")
    return redirect("dashboard")


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
    return redirect(reverse("service_detail", args=[team, service.name]) + "#env")


@login_required
def build_dockerfile(request, team, service, number):
    """The build's plan as the equivalent Dockerfile ("eject"): the recipe to
    build the same image without Hakobune."""
    from django.conf import settings
    from django.http import HttpResponse

    from hakobune.worker.buildpacks import BuildPlan, eject

    _, service = service_for(request.user, team, service)
    build = get_object_or_404(Build, service=service, number=number)
    if not build.plan:
        raise Http404("This deploy has no plan yet: its source was not detected.")
    plan = BuildPlan.from_dict(build.plan)
    if plan.uses_own_dockerfile:
        text = f"# This app is built from its own {plan.dockerfile_path}; Hakobune adds nothing to it.\n"
    else:
        text = (
            f"# The recipe Hakobune made for {service.team.name}/{service.name}, deploy #{build.number}.\n"
            f"# Detected: {build.detection_reason}\n"
            "# Build it yourself with: docker build -f Dockerfile.hakobune .   (from the app's folder)\n"
            + eject(plan, settings.STACK_IMAGES, suite=settings.STACK_DEBIAN_SUITE)
        )
    response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="Dockerfile.hakobune"'
    return response


@login_required
def build_source(request, team, service, number):
    """The source snapshot a deploy was built from."""
    _, service = service_for(request.user, team, service)
    build = get_object_or_404(Build, service=service, number=number)
    if not build.source_archive:
        raise Http404("This deploy has no source snapshot.")
    name = PurePosixPath(build.source_archive.name).name
    suffix = "".join(PurePosixPath(name).suffixes[-2:]) if name.endswith(".tar.gz") else PurePosixPath(name).suffix
    return FileResponse(
        build.source_archive.open("rb"), as_attachment=True, filename=f"{service.name}-deploy-{build.number}{suffix}"
    )


@csrf_exempt
def wake_service(request, path=""):
    """The router sends the requests of a sleeping service here: start it, then
    answer the request from it."""
    from django.http import HttpResponse

    from . import scaling

    service = scaling.service_for_hostname(request.get_host().rsplit(":", 1)[0].lower())
    if service is None or service.live_release is None:
        raise Http404("No service lives at this address.")
    if service.is_stopped:
        return HttpResponse("This service is stopped by its team.\n", status=503, content_type="text/plain")
    try:
        upstreams = scaling.wake(service)
        answer = scaling.forward(request, upstreams[0], path)
    except RuntimeBackendError as exc:
        return HttpResponse(f"The service could not be woken: {exc.message}\n", status=503, content_type="text/plain")
    except Exception as exc:  # the app did not answer the forwarded request
        return HttpResponse(f"The service woke but did not answer: {exc}\n", status=502, content_type="text/plain")
    response = HttpResponse(answer.content, status=answer.status_code)
    for key, value in answer.headers.items():
        if key.lower() not in scaling.HOP_BY_HOP:
            response[key] = value
    return response


@csrf_exempt
@require_POST
def git_webhook(request, webhook_id):
    service = Service.objects.filter(webhook_id=webhook_id).select_related("team").first()
    if service is None:
        raise Http404("No such webhook")
    answer = receive_push(service, request.headers, request.body, request.META.get("REMOTE_ADDR"))
    return JsonResponse({"message": answer.message, "deploy": answer.build_number}, status=answer.status)


@login_required
def build_detail(request, team, service, number):
    membership, service = service_for(request.user, team, service)
    build = get_object_or_404(Build, service=service, number=number)
    plan_steps, plan_notes = [], []
    if build.plan:
        from hakobune.worker.buildpacks import BuildPlan

        plan = BuildPlan.from_dict(build.plan)
        plan_steps = [(phase, command) for phase, command in plan.steps() if command]
        plan_notes = list(plan.notes)
    return render(
        request,
        "services/build_detail.html",
        {
            "membership": membership,
            "service": service,
            "build": build,
            "log_lines": _log_lines(build),
            "plan_steps": plan_steps,
            "plan_notes": plan_notes,
        },
    )


@login_required
def build_log(request, team, service, number):
    """New log lines after ?after=<line id>, for the live log on the page."""
    _, service = service_for(request.user, team, service)
    build = get_object_or_404(Build, service=service, number=number)
    try:
        after = int(request.GET.get("after", 0))
    except ValueError:
        after = 0
    lines = list(build.log_lines.filter(id__gt=after).values_list("id", "text")[:LOG_PAGE_LINES])
    response = render(request, "services/_log_lines.html", {"build": build, "lines": lines, "after": lines[-1][0] if lines else after})
    if not build.in_progress and len(lines) < LOG_PAGE_LINES:
        # The build ended: reload the page to show its outcome and the URL.
        response["HX-Refresh"] = "true"
    return response


@login_required
def build_status(request, team, service, number):
    _, service = service_for(request.user, team, service)
    build = get_object_or_404(Build, service=service, number=number)
    return render(request, "services/_build_status.html", {"build": build, "service": service})


@login_required
def runtime_status(request, team, service):
    """The instances as the runtime sees them now: running, stopped, or in a
    crash loop (with the exit code and OOM kills)."""
    _, service = service_for(request.user, team, service)
    try:
        status = backend_for(service).status(ServiceRef(service.team.name, service.name))
    except RuntimeBackendError as exc:
        status = None
        error = exc.message
    else:
        error = ""
    return render(request, "services/_runtime_status.html", {"service": service, "runtime": status, "error": error})


@login_required
def runtime_logs(request, team, service):
    _, service = service_for(request.user, team, service)
    if not service.live_release_id:
        raise Http404("This service is not running.")
    try:
        lines = backend_for(service).logs(ServiceRef(service.team.name, service.name), tail=200)
        error = ""
    except RuntimeBackendError as exc:
        lines, error = [], exc.message
    return render(request, "services/_runtime_logs.html", {"lines": lines, "error": error})


METRIC_RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "48h": 48 * 3600}


@login_required
def service_metrics(request, team, service):
    """Charts of the collected readings (CPU, memory; requests, latency and
    instances where the runtime reports them) over the chosen range."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from hakobune.frontend.charts import build_charts
    from hakobune.platform.observability.collectors import history

    _, service = service_for(request.user, team, service)
    chosen = request.GET.get("range", "1h")
    seconds = METRIC_RANGES.get(chosen, METRIC_RANGES["1h"])
    until = timezone.now()
    since = until - timedelta(seconds=seconds)
    # About 60 points a line, but never finer than the runtime reports (15 s here, a minute on Cloud Run).
    step = max(seconds // 60, 60)
    charts = build_charts(history(service, since, step), since, until, step)
    return render(request, "services/_metrics.html", {
        "service": service, "charts": charts, "ranges": list(METRIC_RANGES),
        "chosen": chosen if chosen in METRIC_RANGES else "1h", "every": settings.METRICS_SECONDS,
    })


def _log_lines(build):
    if build is None:
        return []
    return list(build.log_lines.values_list("id", "text")[:LOG_PAGE_LINES])


@login_required
@require_POST
def service_traffic(request, team, service):
    """Splits requests between releases by percentage (fields v<number>)."""
    from .services import split_traffic

    _, service = service_for(request.user, team, service, Role.DEVELOPER)
    percents = {}
    for key, value in request.POST.items():
        if key.startswith("v") and key[1:].isdigit():
            try:
                percents[int(key[1:])] = int(value or 0)
            except ValueError:
                messages.error(request, f"Give {key}'s share as a whole number of percent.")
                return redirect("service_detail", team=team, service=service.name)
    try:
        split_traffic(service=service, percents=percents, created_by=request.user)
    except ServiceActionError as exc:
        messages.error(request, str(exc))
    else:
        shares = ", ".join(f"{p}% to v{n}" for n, p in sorted(percents.items()) if p)
        messages.success(request, f"Requests now go {shares}.")
    return redirect("service_detail", team=team, service=service.name)


@login_required
def stacks_page(request):
    """Staff: each language's stack, how many live services are built on it,
    and one action to rebuild it from Debian and redeploy them all."""
    from django.conf import settings

    from hakobune.worker import stacks

    from .services import services_on_stack

    staff_or_403(request.user, "manage stacks")
    if request.method == "POST":
        language = request.POST.get("language", "")
        if language not in stacks.RECIPES:
            messages.error(request, f"Hakobune cannot build a {language!r} stack here.")
        else:
            from hakobune.worker.tasks import rebuild_stack

            rebuild_stack.delay(language, request.user.id)
            messages.success(
                request, f"Rebuilding the {language} stack from Debian; every service on it is redeployed after."
            )
        return redirect("stacks")
    rows = [
        {
            "language": language,
            "configured": settings.STACK_IMAGES.get(language, ""),
            "local": stacks.local_stack_ref(language, settings.STACK_DEBIAN_SUITE),
            "services": len(list(services_on_stack(language))),
        }
        for language in sorted(stacks.RECIPES)
    ]
    return render(request, "services/stacks.html", {"rows": rows})


# -- Cloud Run settings (staff) ---------------------------------------------------------


def _cloud_run_alias() -> str | None:
    """The target whose backend takes the staff's Cloud Run settings, if any."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    for alias, config in settings.RUNTIME_BACKENDS.items():
        if getattr(import_string(config["BACKEND"]), "layered_settings", False):
            return alias
    return None


@login_required
def cloud_run_settings(request, team=None):
    """Staff: the platform's Cloud Run settings (project, region, repository,
    credentials) over the CLOUDRUN_* variables, and each team's over those."""
    from django.conf import settings
    from django.forms import modelform_factory

    from hakobune.platform.accounts.models import Team

    from .backends import get_backend
    from .cloud_settings import layered_options, save_unless_services_move
    from .forms import CloudRunSettingsForm
    from .models import CloudRunDefaults, TeamCloudRunSettings

    staff_or_403(request.user, "manage where Cloud Run services go")
    alias = _cloud_run_alias()
    if alias is None:
        return render(request, "services/cloud_run.html", {"configured": False})
    base = settings.RUNTIME_BACKENDS[alias].get("OPTIONS", {})
    if team is None:
        team_obj = None
        row = CloudRunDefaults.load()
        inherited = base
    else:
        team_obj = get_object_or_404(Team, name=team)
        row = TeamCloudRunSettings.objects.filter(team=team_obj).first() or TeamCloudRunSettings(team=team_obj)
        inherited, _ = layered_options(base, None)
    form_class = modelform_factory(type(row), form=CloudRunSettingsForm)
    here = reverse("cloud_run_team", args=[team]) if team else reverse("cloud_run")
    check = None
    if request.method == "POST" and request.POST.get("action") == "check":
        try:
            check = get_backend(alias, team=team_obj).check_access()
        except RuntimeBackendError as exc:
            check = [(False, exc.message)]
        form = form_class(instance=row, inherited=inherited)
    elif request.method == "POST" and request.POST.get("action") == "reset" and team_obj is not None:
        TeamCloudRunSettings.objects.filter(team=team_obj).delete()
        messages.success(request, f"Team {team_obj} uses the platform's Cloud Run settings again.")
        return redirect(here)
    elif request.method == "POST":
        form = form_class(request.POST, request.FILES, instance=row, inherited=inherited)
        if form.is_valid():
            saved = form.save(commit=False)
            saved.updated_by = request.user
            stranded = save_unless_services_move(saved, alias, base)
            if not stranded:
                messages.success(request, f"Saved; {alias} services of {team_obj or 'every team'} use these settings from their next action.")
                return redirect(here)
            form.add_error(None, (
                f"Not saved: {', '.join(stranded)} already run{'s' if len(stranded) == 1 else ''} in the project, region "
                "and repository in effect now, and would be left behind there. Delete them first, or change only "
                "the credentials, bucket or runtime identity."
            ))
    else:
        form = form_class(instance=row, inherited=inherited)
    effective, _ = layered_options(base, team_obj)
    teams = [
        {"team": t, "settings": getattr(t, "cloud_run_settings", None),
         "services": t.services.filter(target=alias).exclude(desired_state=DesiredState.DELETED).count()}
        for t in Team.objects.select_related("cloud_run_settings").order_by("name")
    ]
    return render(request, "services/cloud_run.html", {
        "configured": True, "alias": alias, "form": form, "team": team_obj, "row": row, "check": check,
        "effective": _effective_summary(effective), "teams": teams,
    })


def _effective_summary(options: dict) -> list[tuple[str, str]]:
    if options.get("credentials_info"):
        credentials = f"service-account key of {options['credentials_info'].get('client_email', '?')} (stored encrypted)"
    elif options.get("credentials") and options["credentials"] != "anonymous":
        credentials = f"key file {options['credentials']}"
    elif options.get("credentials") == "anonymous":
        credentials = "none (anonymous)"
    else:
        credentials = "this host's application default credentials"
    project = options.get("project") or ""
    return [
        ("Project", project or "— not set"),
        ("Region", options.get("region") or "— not set"),
        ("Artifact Registry repository", options.get("repository") or "hakobune"),
        ("Bucket", options.get("bucket") or (f"{project}_cloudbuild" if project else "—")),
        ("Services run as", options.get("service_account") or "the Compute Engine default service account"),
        ("Credentials", credentials),
        ("Builder", options.get("builder") or "dockerfile"),
    ]
