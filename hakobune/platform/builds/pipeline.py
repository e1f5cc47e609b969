"""The deploy pipeline's steps, as platform actions. Each takes a build id,
re-reads the row and claims its step with a conditional UPDATE, so a step
delivered twice does its work once; each queues the next when it is done.

    queued → fetching → detecting → building → deploying → live   (or failed)

The Celery tasks in hakobune/worker/tasks.py only call these. Failures are
classified once (hakobune/platform/failures.py): a passing fault gives the
step back and asks for a retry with backoff, a user's error fails at once
in words, a platform fault fails with a reason for the administrator.

While a step runs, its worker renews its lease on the claim (lease.py); a
step whose worker died is taken back and queued again by the sweeper
(sweeper.py), so every step must be safe to run again from its start. A
step past its time limit (settings.TASK_TIME_LIMITS) fails in words."""

from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from hakobune.platform.crypto import decrypt
from hakobune.platform.diagnoses import Diagnosis, diagnose
from hakobune.platform.failures import MAX_ATTEMPTS, FailureKind, RetryStep, backoff, classify
from hakobune.platform.governance.reviews import needs_review, request_review
from hakobune.platform.locks import deploy_lock
from hakobune.platform import queue
from hakobune.platform.services import releases, sources
from hakobune.worker import gitfetch, source
from hakobune.worker.buildpacks import BuildPlan, apply_service_settings, detect

from . import images
from .lease import Heartbeat
from .log import BuildLog
from .models import Build, BuildStatus
from .state import advance, claim, fail, release_claim
from .sweeper import step_time_limit, timeout_diagnosis
from .workspace import workspace_dir

logger = logging.getLogger(__name__)
S = BuildStatus

# What each step waits on, said when a passing fault made it give up.
STEP_RELIES_ON = {
    S.FETCHING: "The source's host or the storage",
    S.DETECTING: "The storage",
    S.BUILDING: "The image builder",
    S.DEPLOYING: "The runtime",
}


def source_dir(build: Build) -> Path:
    """The unpacked app inside the workspace (recorded by the fetch step)."""
    marker = workspace_dir(build.id) / "root"
    return Path(marker.read_text().strip())


@contextmanager
def step(build_id: int, status: str, log: BuildLog, attempt: int):
    """Runs one step of the build under its lease (renewed meanwhile): any
    failure inside it is classified and acted on, and the workspace goes
    once the build has ended."""
    try:
        with Heartbeat(build_id, status):
            yield
    except RetryStep:
        raise
    except SoftTimeLimitExceeded:
        # What the step started is stopped as the exception leaves it (the
        # build's watch kills its step containers; a deploy removes the
        # instances it started).
        diagnosis = timeout_diagnosis(status, step_time_limit(status))
        logger.warning("build %s: the %s step passed its time limit", build_id, status)
        log.write(f"✗ {diagnosis.in_english()}", keep=True)
        log.flush()
        fail(build_id, diagnosis)
        shutil.rmtree(workspace_dir(build_id), ignore_errors=True)
    except Exception as exc:
        kind = classify(exc)
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if kind == FailureKind.TRANSIENT and attempt < MAX_ATTEMPTS:
            wait = backoff(attempt)
            log.write(f"⟳ Attempt {attempt} of {MAX_ATTEMPTS} met a passing fault: {reason}. "
                      f"Trying again in {wait} s.", keep=True)
            log.flush()
            logger.warning("build %s, %s: attempt %s met a passing fault: %s", build_id, status, attempt, reason)
            release_claim(build_id, status)
            raise RetryStep(wait, reason) from exc
        if kind == FailureKind.TRANSIENT:
            diagnosis = Diagnosis("pipeline.gave_up", {
                "what": STEP_RELIES_ON.get(status, "A service Hakobune relies on"), "attempts": attempt,
                "error": reason[:300],
            })
        else:
            diagnosis = diagnose(exc)
        if kind == FailureKind.PLATFORM:
            logger.error("platform fault in build %s at %s: %s", build_id, status, reason, exc_info=exc)
        tail = getattr(exc, "log_tail", None) or []
        if tail:
            log.write("---- last lines ----", keep=True)
            for line in tail:
                log.write(line, keep=True)
        log.write(f"✗ {diagnosis.in_english()}", keep=True)
        log.flush()
        fail(build_id, diagnosis)
        shutil.rmtree(workspace_dir(build_id), ignore_errors=True)
    finally:
        log.flush()


# -- fetching ---------------------------------------------------------------------


def fetch_source(build_id: int, *, attempt: int = 1) -> None:
    if not (advance(build_id, S.QUEUED, S.FETCHING, claimed_step=S.FETCHING) or claim(build_id, S.FETCHING)):
        return
    build = Build.objects.select_related("service__team").get(id=build_id)
    log = BuildLog(build_id)
    with step(build_id, S.FETCHING, log, attempt):
        workspace = workspace_dir(build_id)
        shutil.rmtree(workspace, ignore_errors=True)
        if build.source_kind == "git" and not build.source_archive:
            tree = _fetch_git(build, workspace, log)
        else:
            tree = _unpack_archive(build, workspace, log)
        root = source.select_subdir(tree, build.source_subdir)
        if build.source_subdir:
            log.write(f"Using the folder {build.source_subdir}")
        digest = source.tree_digest(root)
        (workspace / "root").write_text(str(root))
        Build.objects.filter(id=build_id).update(source_digest=digest)
        log.write(f"✓ Source digest {digest[:12]}")
        log.flush()
        if advance(build_id, S.FETCHING, S.DETECTING):
            queue.enqueue("detect_stack", build_id)


def source_limits() -> source.Limits:
    return source.Limits(
        max_archive_bytes=settings.SOURCE_MAX_ARCHIVE_BYTES,
        max_total_bytes=settings.SOURCE_MAX_TOTAL_BYTES,
        max_entries=settings.SOURCE_MAX_ENTRIES,
        max_ratio=settings.SOURCE_MAX_RATIO,
    )


def _unpack_archive(build: Build, workspace: Path, log: BuildLog) -> Path:
    archive = Path(build.source_archive.path)
    log.write(f"Unpacking {build.source_filename or archive.name} ({_size(archive.stat().st_size)})")
    extracted = source.extract_archive(archive, workspace / "src", source_limits())
    log.write(f"✓ {extracted.files} files, {_size(extracted.total_bytes)}")
    return extracted.root


def _fetch_git(build: Build, workspace: Path, log: BuildLog) -> Path:
    """Clones the build's ref, then keeps the tree as the build's snapshot so
    that rebuilds and rollbacks need no second fetch."""
    service = build.service
    limits = source_limits()
    fetched = gitfetch.fetch_git(
        gitfetch.GitSource(
            url=build.git_url,
            ref=build.git_ref,
            token=decrypt(service.git_token_encrypted),
            submodules=service.git_submodules,
        ),
        workspace / "src",
        policy=sources.source_policy(),
        resolver=sources.resolver,
        timeout=settings.GIT_TIMEOUT,
        max_bytes=limits.max_total_bytes,
        max_entries=limits.max_entries,
        proxy=settings.SOURCE_GIT_PROXY,
        log=log.write,
    )
    snapshot = f"sources/{service.team.name}/{service.name}/build-{build.number}-{fetched.commit[:12]}.tar.gz"
    source.pack_tree(fetched.root, Path(settings.MEDIA_ROOT) / snapshot)
    Build.objects.filter(id=build.id).update(source_archive=snapshot, git_commit=fetched.commit)
    return fetched.root


def _size(count: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


# -- detecting --------------------------------------------------------------------


def detect_stack(build_id: int, *, attempt: int = 1) -> None:
    if not claim(build_id, S.DETECTING):
        return
    build = Build.objects.select_related("service").get(id=build_id)
    log = BuildLog(build_id)
    with step(build_id, S.DETECTING, log, attempt):
        detection = detect(source_dir(build))
        plan = _with_service_settings(detection.plan, build.service, log)
        log.write(f"✓ Detected a {detection.stack} app: {detection.reason}")
        for phase, command in plan.steps():
            if command:
                log.write(f"  {phase} command: {command}")
        if plan.uses_own_dockerfile:
            log.write(f"  built from {plan.dockerfile_path}, started with its CMD")
        for note in plan.notes:
            log.write(f"  note: {note}")
        log.flush()
        if advance(build_id, S.DETECTING, S.BUILDING, plan=plan.to_dict(), detection_reason=detection.reason):
            queue.enqueue("build_image", build_id)


def _with_service_settings(plan: BuildPlan, service, log: BuildLog) -> BuildPlan:
    """The service's settings in the portal over the plan. A port changed in
    the portal (anything but the platform's default) wins over the app's
    hakobune.toml, which wins over detection; so does a health-check path
    other than "/"."""
    port = int(service.port)
    chosen_in_portal = port != settings.DEFAULT_SERVICE_PORT
    if plan.sources.get("port") and plan.port != port:
        if chosen_in_portal:
            log.write(f"  {plan.sources['port']} says port {plan.port}; the service's setting, port {port}, wins.")
        else:
            log.write(f"  {plan.sources['port']} sets the port: {plan.port}.")
    health = service.health_check_path or ""
    if service.start_command or service.build_command:
        log.write("  the service's settings set: " + ", ".join(
            name for name, value in (("start command", service.start_command), ("build command", service.build_command))
            if value
        ))
    return apply_service_settings(
        plan,
        port=port if chosen_in_portal or not plan.sources.get("port") else None,
        health_check_path=health if health not in ("", "/") else None,
        start_command=service.start_command or None,
        build_command=service.build_command or None,
    )


# -- building ---------------------------------------------------------------------


def build_image(build_id: int, *, attempt: int = 1) -> None:
    if not claim(build_id, S.BUILDING):
        return
    build = Build.objects.select_related("service__team").get(id=build_id)
    log = BuildLog(build_id)
    with step(build_id, S.BUILDING, log, attempt):
        workspace = workspace_dir(build_id)
        request = images.build_request_for(build, BuildPlan.from_dict(build.plan), source_dir(build), workspace)
        image = images.builder_for(build.service).build(request, log.write)
        log.write(f"✓ Image {image.ref}", keep=True)
        log.flush()
        Build.objects.filter(id=build_id).update(image=image.ref, plan=image.plan.to_dict())
        shutil.rmtree(workspace, ignore_errors=True)
        _built(build, log)


def _built(build: Build, log: BuildLog) -> None:
    """The image is built: on to the deploy, or first to an administrator's
    review where the service's team asks for one."""
    if needs_review(build.service):
        if advance(build.id, S.BUILDING, S.REVIEWING):
            request_review(build.service)
            log.write("⏸ New services of this team are reviewed by an administrator before they go live; "
                      "this deploy goes on by itself once they approve.")
        return
    if advance(build.id, S.BUILDING, S.DEPLOYING):
        queue.enqueue("deploy_release", build.id)


# -- deploying --------------------------------------------------------------------


def deploy_release(build_id: int, *, attempt: int = 1) -> None:
    """The pipeline's last step: a release of the built image, started; the
    previous release serves until the new one answers."""
    if not claim(build_id, S.DEPLOYING):
        return
    build = Build.objects.select_related("service__team").get(id=build_id)
    service = build.service
    log = BuildLog(build_id)
    with step(build_id, S.DEPLOYING, log, attempt), deploy_lock(service.id):
        service.refresh_from_db()
        if service.live_release is None or service.live_release.build_id != build_id:
            # A resumed deploy finds the release the dead attempt made, and
            # starts it afresh (what that attempt started is replaced).
            release = releases.release_for_build(build)
            releases.start(release, log.write, may_retry=attempt < MAX_ATTEMPTS)
        # else: the dead attempt made it live, and died before saying so.
        advance(build_id, S.DEPLOYING, S.LIVE)
        service.refresh_from_db()  # the live release now gives its address (Cloud Run's own)
        log.write(f"✓ Live at {service.url}", keep=True)
