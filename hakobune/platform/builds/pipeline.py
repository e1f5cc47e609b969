"""The deploy pipeline's steps, as platform actions. Each takes a build id,
re-reads the row and claims its step with a conditional UPDATE, so a step
delivered twice does its work once; each queues the next when it is done.

    queued → fetching → detecting → building → deploying → live   (or failed)

A build waits queued until admission lets it in (builds/admission.py). A
build cancelled or superseded (builds/stopping.py) stops where it is: its
claims fail, its log raises BuildStopped, its build's watch and its git fetch
kill what runs, and its later steps do nothing.

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
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection

from hakobune.platform.crypto import decrypt
from hakobune.platform.diagnoses import Diagnosis, diagnose
from hakobune.platform.failures import MAX_ATTEMPTS, FailureKind, RetryStep, backoff, classify
from hakobune.platform.governance.reviews import needs_review, request_review
from hakobune.platform.locks import deploy_lock
from hakobune.platform import queue
from hakobune.platform.services import releases, sources
from hakobune.worker import gitfetch, source
from hakobune.worker.buildpacks import BuildPlan, apply_service_settings, detect, java, versions

from . import admission, disk, images
from .lease import Heartbeat
from .log import BuildLog, BuildStopped
from .milestones import mark
from .models import ADMITTED, Build, BuildStatus
from .state import advance, claim, fail, is_stopped, release_claim
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


def stop_check(build_id: int, every: float = 1.0):
    """A callable saying whether the build was cancelled or superseded, asking
    the database at most every `every` s; safe to call from a step's helper
    threads (the build's watch, git's), which close their own connection."""
    last = {"at": 0.0, "stopped": False}

    def stopped() -> bool:
        now = time.monotonic()
        if last["stopped"] or now - last["at"] < every:
            return last["stopped"]
        last["at"] = now
        try:
            last["stopped"] = is_stopped(build_id)
        except Exception:  # noqa: BLE001 - a failed look is no reason to stop a build
            logger.warning("could not read whether build %s was stopped", build_id, exc_info=True)
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection.close()
        return last["stopped"]

    return stopped


def step_log(build_id: int) -> BuildLog:
    return BuildLog(build_id, stop_check=stop_check(build_id))


@contextmanager
def step(build_id: int, status: str, log: BuildLog, attempt: int):
    """Runs one step of the build under its lease (renewed meanwhile): any
    failure inside it is classified and acted on, and the workspace goes
    once the build has ended. A build stopped (cancelled, superseded)
    meanwhile just ends here: whatever its step raised on the way out is no
    failure of the build."""
    try:
        with Heartbeat(build_id, status):
            yield
    except SoftTimeLimitExceeded:
        # What the step started is stopped as the exception leaves it (the
        # build's watch kills its step containers; a deploy removes the
        # instances it started).
        logger.warning("build %s: the %s step passed its time limit", build_id, status)
        _fail_step(build_id, status, log, timeout_diagnosis(status, step_time_limit(status)))
    except Exception as exc:
        log.stop_check = None
        if isinstance(exc, BuildStopped) or is_stopped(build_id):
            log.write("⊘ Stopped here.", keep=True)
            log.flush()
            shutil.rmtree(workspace_dir(build_id), ignore_errors=True)
            logger.info("build %s stopped at %s (%s)", build_id, status, type(exc).__name__)
            return
        if isinstance(exc, RetryStep):
            raise
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
        _fail_step(build_id, status, log, diagnosis)
    finally:
        log.flush()


def _fail_step(build_id: int, status: str, log: BuildLog, diagnosis: Diagnosis) -> None:
    """The build ends failed at this step, saying why; its workspace goes and
    its build slot is free for the next queued build."""
    log.write(f"✗ {diagnosis.in_english()}", keep=True)
    log.flush()
    fail(build_id, diagnosis)
    shutil.rmtree(workspace_dir(build_id), ignore_errors=True)
    if status in ADMITTED:
        queue.enqueue("admit_builds")


# The deploy step's parts, as the runtime reports their ends (DeploySpec.on_step).
DEPLOY_MILESTONES = ("started", "healthy", "routed")


# -- fetching ---------------------------------------------------------------------


def fetch_source(build_id: int, *, attempt: int = 1) -> None:
    # Admission moved the build to fetching; a fetch asked for a build still
    # queued admits it only if a slot is free (otherwise admission will).
    if not (claim(build_id, S.FETCHING) or admission.admit_one(build_id)):
        return
    build = Build.objects.select_related("service__team").get(id=build_id)
    log = step_log(build_id)
    with step(build_id, S.FETCHING, log, attempt):
        # No build starts on a disk too full to finish it (builds/disk.py).
        disk.check_free_disk(build.service)
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
        host = queue.this_host()
        Build.objects.filter(id=build_id).update(source_digest=digest, worker_host=host)
        log.write(f"✓ Source digest {digest[:12]}")
        log.flush()
        mark(build_id, "fetched")
        if advance(build_id, S.FETCHING, S.DETECTING):
            queue.enqueue("detect_stack", build_id, host=host)


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


def fetch_service_git(service, url: str, ref: str, into: Path, *, log, should_stop=None):
    """Clones `ref` of `url` into `into` with the service's token and
    submodule setting, through the platform's address checks and limits."""
    limits = source_limits()
    return gitfetch.fetch_git(
        gitfetch.GitSource(url=url, ref=ref, token=decrypt(service.git_token_encrypted),
                           submodules=service.git_submodules),
        into,
        policy=sources.source_policy(),
        resolver=sources.resolver,
        timeout=settings.GIT_TIMEOUT,
        max_bytes=limits.max_total_bytes,
        max_entries=limits.max_entries,
        proxy=settings.SOURCE_GIT_PROXY,
        log=log,
        should_stop=should_stop,
    )


def _fetch_git(build: Build, workspace: Path, log: BuildLog) -> Path:
    """Clones the build's ref, then keeps the tree as the build's snapshot so
    that rebuilds and rollbacks need no second fetch."""
    service = build.service
    fetched = fetch_service_git(service, build.git_url, build.git_ref, workspace / "src", log=log.write,
                                should_stop=stop_check(build.id))
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
    log = step_log(build_id)
    with step(build_id, S.DETECTING, log, attempt):
        # Google Cloud's buildpack settings among the service's variables are build settings too.
        detection = detect(source_dir(build), build_env=images.google_build_env(build.service))
        plan = _with_service_settings(detection.plan, build.service, log)
        plan = java.with_repository(plan, settings.MAVEN_REPOSITORY)
        # The stack that has the language version the app asks for, or a refusal in words.
        plan, chosen = versions.fit_stack(plan, images.builder_for(build.service).stack_offers)
        log.write(f"✓ Detected a {detection.stack} app: {detection.reason}")
        if chosen:
            log.write(f"  {chosen}")
        for phase, command in plan.steps():
            if command:
                log.write(f"  {phase} command: {command}")
        if plan.uses_own_dockerfile:
            log.write(f"  built from {plan.dockerfile_path}, started with its CMD")
        if not plan.web:
            log.write("  no `web` process: the app runs without a URL (nothing is routed to it)")
        for note in plan.notes:
            log.write(f"  note: {note}")
        log.flush()
        mark(build_id, "detected")
        if advance(build_id, S.DETECTING, S.BUILDING, plan=plan.to_dict(), detection_reason=detection.reason):
            queue.enqueue("build_image", build_id, host=build.worker_host)


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
    log = step_log(build_id)
    with step(build_id, S.BUILDING, log, attempt):
        workspace = workspace_dir(build_id)
        request = images.build_request_for(build, BuildPlan.from_dict(build.plan), source_dir(build), workspace,
                                           should_stop=stop_check(build_id))
        image = images.builder_for(build.service).build(request, log.write)
        log.write(f"✓ Image {image.ref}", keep=True)
        log.flush()
        Build.objects.filter(id=build_id).update(image=image.ref, plan=image.plan.to_dict())
        mark(build_id, "built")
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
            queue.enqueue("admit_builds")
        return
    if advance(build.id, S.BUILDING, S.DEPLOYING):
        queue.enqueue("deploy_release", build.id)
        queue.enqueue("admit_builds")  # its build slot is free


# -- deploying --------------------------------------------------------------------


def deploy_release(build_id: int, *, attempt: int = 1) -> None:
    """The pipeline's last step: a release of the built image, started; the
    previous release serves until the new one answers."""
    if not claim(build_id, S.DEPLOYING):
        return
    build = Build.objects.select_related("service__team").get(id=build_id)
    service = build.service
    log = BuildLog(build_id)
    started = None
    with step(build_id, S.DEPLOYING, log, attempt), deploy_lock(service.id):
        # Under the lock, the later deploy wins: one that went live while this
        # one waited for the lock is not replaced by this older one.
        newer = service.builds.filter(number__gt=build.number, status=S.LIVE).order_by("-number").first()
        if newer is not None:
            if advance(build_id, S.DEPLOYING, S.SUPERSEDED, failed_step=S.DEPLOYING):
                log.write(f"⊘ Superseded: deploy #{newer.number}, a newer one, went live first; "
                          "this one is not deployed over it.", keep=True)
            return
        service.refresh_from_db()
        if service.live_release is None or service.live_release.build_id != build_id:
            # A resumed deploy finds the release the dead attempt made, and
            # starts it afresh (what that attempt started is replaced).
            release = releases.release_for_build(build)
            releases.wait_for_addons(service, log.write)
            releases.run_release_phase(release, log.write)
            releases.start(release, log.write, may_retry=attempt < MAX_ATTEMPTS,
                           on_step=lambda name: mark(build_id, name))
            started = release
        # else: the dead attempt made it live, and died before saying so.
        service.refresh_from_db()  # the live release now gives its address (Cloud Run's own)
        log.write(f"✓ Live at {service.url}", keep=True)
        # A runtime that does not tell its steps apart: they all ended now.
        mark(build_id, *DEPLOY_MILESTONES, only_missing=True)
        # Whole before the build reads as live: whoever sees `live` reads every line.
        log.flush()
        advance(build_id, S.DEPLOYING, S.LIVE)
    if started is not None and service.live_release_id == started.id:
        # Outside the lock: the replaced release drains while the next
        # deploy of the service may already start.
        releases.retire_replaced(started)


# -- builds stopped ------------------------------------------------------------------


def stop_build_work(build_id: int) -> None:
    """What a cancelled or superseded build still runs is stopped: its build
    step containers (found by the builder, e.g. in the build's cgroup) and its
    workspace. The step's own worker stops its processes too (its log and the
    build's watch see the status); this reaches them from outside, even when
    that worker is stuck."""
    build = Build.objects.select_related("service__team").filter(id=build_id).first()
    if build is None or not is_stopped(build_id):
        return
    try:
        stopped = images.builder_for(build.service).stop(build.service.team.name, build.id)
    except Exception as exc:  # noqa: BLE001 - the build's own watch stops them too
        logger.warning("could not stop the containers of build %s: %s", build_id, exc)
        stopped = 0
    if stopped:
        with BuildLog(build_id) as log:
            log.write(f"⊘ Stopped {stopped} running build step{'s' if stopped != 1 else ''}.", keep=True)
    shutil.rmtree(workspace_dir(build_id), ignore_errors=True)
