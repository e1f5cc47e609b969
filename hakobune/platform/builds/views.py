"""A service's deploys: the page of one, its live log and status, its source
snapshot and recipe, deploying it again; and, for staff, the stacks."""

from pathlib import PurePosixPath

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import staff_or_403
from hakobune.platform.queue import enqueue
from hakobune.platform.services.access import service_for
from hakobune.platform.services.decorators import service_action
from hakobune.platform.services.services import ServiceActionError, cancel_build, redeploy_build, services_on_stack
from hakobune.worker import stacks
from hakobune.worker.buildpacks import BuildPlan, eject

from .admission import waiting_ahead
from .images import local_builder
from .models import LOG_PAGE_LINES, Build


# The plan's phases as the recipe table names them.
PHASES = {"install": gettext_lazy("install"), "build": gettext_lazy("build"), "start": gettext_lazy("start")}


def build_for(user, team, service, number, need=Role.VIEWER, doing="change services"):
    """The membership, the service and its deploy #number, as service_for finds them."""
    membership, service = service_for(user, team, service, need, doing)
    return membership, service, get_object_or_404(Build, service=service, number=number)


@login_required
def build_detail(request, team, service, number):
    membership, service, build = build_for(request.user, team, service, number)
    plan_steps, plan_notes = [], []
    if build.plan:
        plan = BuildPlan.from_dict(build.plan)
        plan_steps = [(PHASES.get(phase, phase), command) for phase, command in plan.steps() if command]
        plan_notes = list(plan.notes)
    return render(request, "builds/build_detail.html", {
        "membership": membership,
        "service": service,
        "build": build,
        "log_lines": build.log_page(),
        "plan_steps": plan_steps,
        "plan_notes": plan_notes,
        "waiting_ahead": waiting_ahead(build),
    })


@login_required
def build_log(request, team, service, number):
    """New log lines after ?after=<line id>, for the live log on the page."""
    _, _, build = build_for(request.user, team, service, number)
    try:
        after = int(request.GET.get("after", 0))
    except ValueError:
        after = 0
    lines = build.log_page(after)
    response = render(request, "builds/_log_lines.html", {"build": build, "lines": lines, "after": lines[-1][0] if lines else after})
    if not build.in_progress and len(lines) < LOG_PAGE_LINES:
        # The build ended: reload the page to show its outcome and the URL.
        response["HX-Refresh"] = "true"
    return response


@login_required
def build_status(request, team, service, number):
    membership, service, build = build_for(request.user, team, service, number)
    return render(request, "builds/_build_status.html", {
        "build": build, "service": service, "membership": membership, "waiting_ahead": waiting_ahead(build),
    })


@login_required
def build_dockerfile(request, team, service, number):
    """The build's plan as the equivalent Dockerfile ("eject"): the recipe to
    build the same image without Hakobune."""
    _, service, build = build_for(request.user, team, service, number)
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
            + eject(plan, local_builder().stack_refs(plan))
        )
    response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="Dockerfile.hakobune"'
    return response


@login_required
def build_source(request, team, service, number):
    """The source snapshot a deploy was built from."""
    _, service, build = build_for(request.user, team, service, number)
    if not build.source_archive:
        raise Http404("This deploy has no source snapshot.")
    name = PurePosixPath(build.source_archive.name).name
    suffix = "".join(PurePosixPath(name).suffixes[-2:]) if name.endswith(".tar.gz") else PurePosixPath(name).suffix
    return FileResponse(
        build.source_archive.open("rb"), as_attachment=True, filename=f"{service.name}-deploy-{build.number}{suffix}"
    )


@service_action(doing="deploy")
def build_redeploy(request, service, number):
    """Builds and deploys an earlier deploy's source snapshot again."""
    build = get_object_or_404(Build, service=service, number=number)
    new = redeploy_build(build=build, created_by=request.user)
    return gettext("Deploying the source of #%(old)s again, as #%(new)s.") % {"old": build.number, "new": new.number}


@login_required
@require_POST
def build_cancel(request, team, service, number):
    """Cancels a deploy still queued or building: its running step stops."""
    _, service, build = build_for(request.user, team, service, number, Role.DEVELOPER, "cancel deploys")
    try:
        cancel_build(build=build, cancelled_by=request.user)
    except ServiceActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, gettext("Deploy #%(number)s was cancelled.") % {"number": build.number})
    if request.POST.get("back") == "service":
        return redirect("services:detail", service.team.name, service.name)
    return redirect("builds:detail", service.team.name, service.name, build.number)


@login_required
def stacks_page(request):
    """Staff: each language's stack, how many live services are built on it,
    and one action to rebuild it from Debian and redeploy them all."""
    staff_or_403(request.user, "manage stacks")
    if request.method == "POST":
        return _rebuild_stack(request, request.POST.get("language", ""))
    rows = [
        {
            "language": language,
            "configured": {**settings.STACK_IMAGES, **settings.ADDON_IMAGES}.get(language, ""),
            "local": stacks.local_stack_ref(language, settings.STACK_DEBIAN_SUITE),
            "services": len(list(services_on_stack(language))),
        }
        for language in sorted(stacks.RECIPES)
    ]
    return render(request, "builds/stacks.html", {"rows": rows})


def _rebuild_stack(request, language):
    if language not in stacks.RECIPES:
        messages.error(request, gettext("Hakobune cannot build a %(language)r stack here.") % {"language": language})
        return redirect("builds:stacks")
    enqueue("rebuild_stack", language, request.user.id)
    messages.success(request, gettext("Rebuilding the %(language)s stack from Debian; every service on it is redeployed after.") % {"language": language})
    return redirect("builds:stacks")
