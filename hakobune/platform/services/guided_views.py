"""The guided first deploy: a source (a sample, an upload or a git
repository), its plan in plain words before anything is built, a size, the
deploy's steps lighting up with their timings, and what each step would have
been by hand. The actions are in guided.py."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import member_of
from hakobune.platform.builds.models import Build, BuildStatus, PlanCheck
from hakobune.platform.queue import enqueue_on_commit
from hakobune.worker.buildpacks import BuildPlan

from . import guided
from .access import service_for
from .forms import GuidedSourceForm
from .services import ServiceActionError, create_service, set_source
from .uploads import upload_refusal

S = BuildStatus

# The steps a person watches, the build status each belongs to, and the milestone that ends it.
STEPS = (
    ("fetch", _("Fetch the source"), S.FETCHING, "fetched"),
    ("detect", _("Detect what it is"), S.DETECTING, "detected"),
    ("build", _("Build the image"), S.BUILDING, "built"),
    ("start", _("Start the container"), S.DEPLOYING, "started"),
    ("health", _("Health check"), S.DEPLOYING, "healthy"),
    ("route", _("Route the address"), S.DEPLOYING, "routed"),
)
LANGUAGES = {"python": "Python", "node": "Node.js", "static": _("static site"), "go": "Go", "java": "Java",
             "ruby": "Ruby", "php": "PHP", "dockerfile": "Dockerfile", "python-node": "Python + Node.js"}
ORDER = [S.QUEUED, S.FETCHING, S.DETECTING, S.BUILDING, S.REVIEWING, S.DEPLOYING, S.LIVE]


@login_required
def guided_start(request, team):
    membership = member_of(request.user, team, Role.DEVELOPER, "create services")
    # "Change" on the plan: another source for a service made in this flow.
    service = None
    if request.GET.get("service") or request.POST.get("service"):
        _, service = service_for(request.user, team, request.GET.get("service") or request.POST.get("service"),
                                 need=Role.DEVELOPER, doing="deploy")
    initial = {"name": service.name} if service else {}
    if request.method != "POST":
        return _start_page(request, membership, GuidedSourceForm(samples=guided.SAMPLES, initial=initial), service)
    form = GuidedSourceForm(request.POST, request.FILES, samples=guided.SAMPLES)
    refusal = upload_refusal(request)
    if refusal:
        form = GuidedSourceForm(samples=guided.SAMPLES, initial={"name": request.POST.get("name", "")})
        form.refusal = refusal
        return _start_page(request, membership, form, service)
    if service is not None:
        # The name is the service's already.
        form.data = form.data.copy()
        form.data["name"] = service.name
    if not form.is_valid():
        return _start_page(request, membership, form, service)
    data = form.cleaned_data
    kind = data["source_kind"]
    try:
        if service is None:
            service = create_service(
                team=membership.team, name=data["name"], created_by=request.user,
                source_subdir=data["source_subdir"] if kind != "sample" else "",
                git_url=data["git_url"] if kind == "git" else "", git_ref=data["git_ref"] if kind == "git" else "",
                git_token=data["git_token"] if kind == "git" else "",
                git_submodules=kind == "git" and data["git_submodules"],
            )
        elif kind != "sample":
            set_source(service=service, git_url=data["git_url"] if kind == "git" else "",
                       git_ref=data["git_ref"] if kind == "git" else "", subdir=data["source_subdir"],
                       created_by=request.user)
        check = guided.check_plan(
            service=service, created_by=request.user, sample_name=data["sample"] if kind == "sample" else "",
            source_file=data["source"] if kind == "archive" else None,
        )
    except (ServiceActionError, ValidationError) as exc:
        form.add_error("name" if service is None else None,
                       exc.messages[0] if isinstance(exc, ValidationError) else str(exc))
        return _start_page(request, membership, form, service)
    return redirect("services:guided_plan", team=team, service=service.name, check=check.id)


def _start_page(request, membership, form, service):
    return render(request, "services/guided_start.html", {
        "form": form, "team": membership.team, "samples": guided.SAMPLES, "service": service,
    })


def _check_for(request, team, service, check, need=Role.VIEWER):
    membership, service = service_for(request.user, team, service, need=need, doing="deploy")
    return membership, service, get_object_or_404(PlanCheck, service=service, id=check)


@login_required
def guided_plan(request, team, service, check):
    membership, service, check = _check_for(request, team, service, check)
    if request.method == "POST":
        membership, service, check = _check_for(request, team, service.name, check.id, need=Role.DEVELOPER)
        try:
            build = guided.deploy_checked_plan(check=check, size_name=request.POST.get("size", ""),
                                               created_by=request.user)
        except ServiceActionError as exc:
            return render(request, "services/guided_plan.html", _plan_context(membership, service, check, str(exc)),
                          status=400)
        return redirect("services:guided_deploy", team=team, service=service.name, number=build.number)
    template = "services/_guided_plan.html" if request.headers.get("HX-Request") else "services/guided_plan.html"
    return render(request, template, _plan_context(membership, service, check))


@login_required
def guided_recheck(request, team, service, check):
    """Looks at the same source again (after a setting was changed)."""
    membership, service, check = _check_for(request, team, service, check, need=Role.DEVELOPER)
    if request.method != "POST":
        return redirect("services:guided_plan", team=team, service=service.name, check=check.id)
    again = PlanCheck.objects.create(
        service=service, created_by=request.user, source_kind=check.source_kind, sample=check.sample,
        source_archive=check.source_archive.name, source_filename=check.source_filename, git_url=check.git_url,
        git_ref=check.git_ref, git_commit=check.git_commit, source_subdir=check.source_subdir,
    )
    enqueue_on_commit("check_plan", again.id)
    return redirect("services:guided_plan", team=team, service=service.name, check=again.id)


def _plan_context(membership, service, check, error=""):
    plan = BuildPlan.from_dict(check.plan) if check.plan else None
    choices, limits = guided.size_choices(service)
    chosen = next((c.size.name for c in choices if c.size.name == guided.DEFAULT_SIZE and c.fits), None)
    chosen = chosen or next((c.size.name for c in choices if c.fits), "")
    return {
        "membership": membership, "service": service, "check": check, "plan": plan, "sizes": choices,
        "limits": limits, "chosen_size": chosen, "error": error, "sample": guided.sample(check.sample),
        "language": LANGUAGES.get(check.stack, check.stack),
    }


@login_required
def guided_deploy(request, team, service, number):
    membership, service = service_for(request.user, team, service)
    build = get_object_or_404(Build, service=service, number=number)
    template = "services/_guided_steps.html" if request.headers.get("HX-Request") else "services/guided_deploy.html"
    return render(request, template, {
        "membership": membership, "service": service, "build": build, "steps": steps_of(build),
        "by_hand": guided.by_hand(build) if build.status == S.LIVE else [],
        "dockerfile_url": reverse("builds:dockerfile", args=[service.team.name, service.name, build.number]),
    })


def steps_of(build: Build) -> list[dict]:
    """The six steps, each done (with its seconds), current, failed or waiting."""
    marks = {name: parse_datetime(value) for name, value in (build.milestones or {}).items()}
    status = build.failed_step if build.status in (S.FAILED, S.CANCELLED, S.SUPERSEDED) else build.status
    at = ORDER.index(status) if status in ORDER else 0
    previous = build.started_at
    steps, failed_seen = [], False
    for key, label, step_status, milestone in STEPS:
        ended = marks.get(milestone)
        if build.status == S.LIVE and ended is None:
            ended = build.finished_at
        if ended is not None:
            seconds = (ended - previous).total_seconds() if previous else None
            steps.append({"key": key, "label": label, "state": "done", "seconds": seconds})
            previous = ended
            continue
        reached = at >= ORDER.index(step_status)
        if build.status in (S.FAILED, S.CANCELLED, S.SUPERSEDED) and reached and not failed_seen:
            state, failed_seen = "failed", True
        elif build.status not in (S.FAILED, S.CANCELLED, S.SUPERSEDED) and reached and not any(
                s["state"] == "current" for s in steps):
            state = "current"
        else:
            state = "waiting"
        steps.append({"key": key, "label": label, "state": state, "seconds": None})
    return steps

