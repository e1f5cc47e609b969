"""The guided first deploy's actions: the built-in sample apps (the
repository's samples/ folder), a look at a source's plan before anything is
built (builds/plan_check.py, on a worker), the named sizes, and the deploy of
a plan that was looked at."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from hakobune.platform.builds.models import Build, PlanCheck
from hakobune.platform.governance.quotas import limits_of, reservation, usage_of
from hakobune.platform.queue import enqueue_on_commit

from .models import Service, SourceKind
from .services import ServiceActionError, _queue_build, update_settings

SAMPLES_DIR = Path(settings.PROJECT_DIR) / "samples"


@dataclass(frozen=True)
class Sample:
    name: str  # its folder in samples/
    title: str
    language: str
    shows: str  # what it shows, in a sentence

    @property
    def folder(self) -> Path:
        return SAMPLES_DIR / self.name


SAMPLES = (
    Sample("flask", "Flask", "Python", _("A one-file Python web app, served by gunicorn.")),
    Sample("fastapi", "FastAPI", "Python", _("A Python API with interactive documentation at /docs, served by uvicorn.")),
    Sample("django", "Django", "Python", _("A Django project whose stylesheet is collected at build time.")),
    Sample("node-express", "Node.js / Express", "JavaScript", _("An Express server installed with npm from its lock file.")),
    Sample("static", _("Static site"), "HTML", _("Plain HTML and CSS files, sent as they are by a small web server.")),
)


def sample(name: str) -> Sample | None:
    return next((s for s in SAMPLES if s.name == name), None)


def pack_sample(found: Sample) -> bytes:
    """The sample's folder as a .tar.gz, as a person would pack it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(found.folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                info = tarfile.TarInfo(f"{found.name}/{path.relative_to(found.folder).as_posix()}")
                info.size = path.stat().st_size
                info.mode = 0o644
                with path.open("rb") as data:
                    tar.addfile(info, data)
    return buffer.getvalue()


# -- sizes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    name: str
    label: str
    cpu: float
    memory_mb: int
    good_for: str


SIZES = (
    Size("small", _("Small"), 0.25, 128, _("A static site or a small API.")),
    Size("medium", _("Medium"), 0.5, 256, _("Most first apps: Flask, FastAPI, Express.")),
    Size("large", _("Large"), 1.0, 512, _("Django, or an app that keeps more in memory.")),
)
DEFAULT_SIZE = "medium"


def size(name: str) -> Size | None:
    return next((s for s in SIZES if s.name == name), None)


@dataclass(frozen=True)
class SizeChoice:
    """A size as this service would hold it against its team's quota."""

    size: Size
    cpu_after: float
    memory_after: int
    fits: bool


def size_choices(service: Service) -> tuple[list[SizeChoice], object]:
    """Each size with what the team would hold with it (its other services
    and add-ons, plus this one at that size), and the team's limits."""
    limits = limits_of(service.team)
    now = usage_of(service.team)
    held_cpu, held_memory = reservation(service)
    instances = int(service.instances or 1)
    choices = []
    for each in SIZES:
        cpu = round(now.cpu - held_cpu + each.cpu * instances, 2)
        memory = now.memory_mb - held_memory + each.memory_mb * instances
        choices.append(SizeChoice(each, cpu, memory, cpu <= limits.cpu + 1e-9 and memory <= limits.memory_mb))
    return choices, limits


# -- the plan, then the deploy ---------------------------------------------------------


def check_plan(*, service: Service, created_by, source_file=None, sample_name: str = "") -> PlanCheck:
    """Asks a worker for the plan of a source, building nothing: an uploaded
    archive, one of the samples, or else the service's git repository."""
    check = PlanCheck(service=service, created_by=created_by, source_subdir=service.source_subdir)
    if sample_name:
        found = sample(sample_name)
        if found is None:
            raise ServiceActionError(f"There is no sample called {sample_name}.")
        check.source_kind, check.sample = "sample", found.name
        check.source_filename = f"{found.name}.tar.gz"
        check.source_subdir = ""
        check.source_archive.save(f"sample-{found.name}.tar.gz", ContentFile(pack_sample(found)), save=False)
    elif source_file is not None:
        check.source_kind = SourceKind.ARCHIVE
        check.source_filename = getattr(source_file, "name", "") or ""
        check.source_archive.save(f"upload-{_suffix_of(check.source_filename)}", source_file, save=False)
    elif service.source_kind == SourceKind.GIT:
        check.source_kind = SourceKind.GIT
        check.git_url, check.git_ref = service.git_url, service.git_ref
    else:
        raise ServiceActionError("Choose a sample, upload an archive or give a Git repository.")
    with transaction.atomic():
        check.save()
        enqueue_on_commit("check_plan", check.id)
    return check


def _suffix_of(filename: str) -> str:
    lowered = filename.lower()
    for suffix in (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar", ".zip"):
        if lowered.endswith(suffix):
            return "archive" + suffix
    return "archive"


def deploy_checked_plan(*, check: PlanCheck, size_name: str, created_by) -> Build:
    """Gives the service the chosen size, then deploys the very source whose
    plan was shown (its snapshot: the same archive, the same git commit)."""
    if check.status != PlanCheck.Status.DONE:
        raise ServiceActionError("The plan is not ready yet: wait until the source has been looked at.")
    if check.build_id:
        return check.build
    chosen = size(size_name)
    if chosen is None:
        raise ServiceActionError("Choose one of the sizes.")
    service = check.service
    update_settings(service=service, created_by=created_by, cpu=chosen.cpu, memory_mb=chosen.memory_mb)

    def prepare(build):
        build.source_archive.name = check.source_archive.name
        build.source_filename = check.source_filename or check.git_ref
        build.source_subdir = check.source_subdir
        if check.source_kind == SourceKind.GIT:
            build.source_kind = SourceKind.GIT
            build.trigger = "git"
            build.git_url, build.git_ref, build.git_commit = check.git_url, check.git_ref, check.git_commit
        else:
            build.source_kind = SourceKind.ARCHIVE
            build.trigger = "sample" if check.source_kind == "sample" else "upload"

    with transaction.atomic():
        if PlanCheck.objects.select_for_update().get(id=check.id).build_id:
            return PlanCheck.objects.get(id=check.id).build
        build = _queue_build(service, created_by, prepare)
        PlanCheck.objects.filter(id=check.id).update(build=build)
    return build


# -- what a person would have typed ------------------------------------------------------


@dataclass(frozen=True)
class ByHand:
    step: str  # fetch, detect, build, start, health, route
    command: str


def by_hand(build: Build) -> list[ByHand]:
    """Each step of this deploy as the command a person would have typed on
    a machine with Docker and Caddy, with this deploy's own values."""
    from shlex import quote

    service = build.service
    plan = build.plan or {}
    folder = service.name
    if build.source_kind == SourceKind.GIT and build.git_url:
        fetch = f"git clone --branch {quote(build.git_ref)} {quote(build.git_url)} {folder}"
        if build.git_commit:
            fetch += f" && git -C {folder} checkout {build.git_commit[:12]}"
    elif (build.source_filename or "").lower().endswith(".zip"):
        fetch = f"unzip {quote(build.source_filename)} -d {folder}"
    else:
        fetch = f"mkdir {folder} && tar -xzf {quote(build.source_filename or 'app.tar.gz')} -C {folder} --strip-components=1"
    if build.source_subdir:
        fetch += f" && cd {folder}/{quote(build.source_subdir)}"
    else:
        fetch += f" && cd {folder}"
    image = build.image or f"hakobune/{service.team.name}/{service.name}:{(build.source_digest or 'latest')[:12]}"
    port = int(plan.get("port") or service.port)
    release = service.releases.filter(build=build).order_by("-number").first()
    number = release.number if release else 1
    memory, cpu = int(service.memory_mb), float(service.cpu)
    run = (
        f"docker run -d --name hakobune-{service.team.name}-{service.name}-v{number}-0"
        f" --network hakobune-team-{service.team.name} --network-alias {service.name} --hostname {service.name}"
        f" --user 10001:10001 --cap-drop ALL --security-opt no-new-privileges --read-only --tmpfs /tmp"
        f" --memory {memory}m --memory-swap {memory}m --cpus {cpu:g} --pids-limit 256"
        f" -e PORT={port} -p 127.0.0.1::{port} {image}"
    )
    upstream = ((release.runtime_state or {}).get("upstreams") or [""])[0] if release else ""
    upstream = upstream or f"{service.name}:{port}"
    health_path = plan.get("health_check_path") or service.health_check_path or "/"
    own = plan.get("stack") == "dockerfile"
    dockerfile = quote(plan.get("dockerfile_path") or "Dockerfile") if own else "Dockerfile.hakobune"
    return [
        ByHand("fetch", fetch),
        ByHand("detect", f"ls -a && cat {dockerfile}" if own else "ls -a && nano Dockerfile.hakobune"),
        ByHand("build", f"docker build -f {dockerfile} -t {image} ."),
        ByHand("start", run),
        ByHand("health", f"curl -i http://{upstream}{health_path}"),
        ByHand("route", f"caddy reverse-proxy --from {service.hostname} --to {upstream}"),
    ]
