"""The sweeper: work the database says was accepted, but that no worker is
doing, is queued again from the database. It runs every SWEEP_SECONDS (the
scheduler) and when a worker starts.

- A claimed step whose lease ran out (its worker died: kill -9, out of
  memory, a host restart) is taken back and queued again, so that another
  worker resumes it; the steps are idempotent (the fetch wipes its
  workspace first, a build re-run reuses the engine's cache, a deploy finds
  the release it made and replaces what the dead attempt started). After
  STEP_MAX_RESUMES resumes of one step, or when the step had run for its
  whole time limit (its worker was killed at the hard limit), the build
  fails with a reason instead.
- A step that was queued but never claimed (its message was lost: Redis
  restarted, which keeps nothing on disk, or a worker died holding it) is
  queued again: at once when Redis lost its memory, else once it has waited
  STEP_REQUEUE_SECONDS. A duplicate is harmless: the first delivery claims
  the step, the others find it claimed and do nothing.

Builds waiting for an administrator's review wait for a person, not a
worker, and are left alone. Releases made without a build (a rollback, a
scale, new settings or environment, a restart) are swept the same way: one
whose worker died while starting it (its lease ran out) is started again, at
most STEP_MAX_RESUMES times, then fails with a reason; one waiting to start
whose message was lost is queued again."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from hakobune.platform import queue
from hakobune.platform.diagnoses import Diagnosis
from hakobune.platform.locks import redis_client
from hakobune.platform.services.models import Release

from .log import BuildLog
from .models import Build, BuildStatus, PlanCheck
from .state import fail, failure_fields, requeued, take_back
from .workspace import workspace_dir

logger = logging.getLogger(__name__)
S = BuildStatus

# The task that runs each step, and the step in words.
STEP_TASKS = {
    S.FETCHING: "fetch_source",
    S.DETECTING: "detect_stack",
    S.BUILDING: "build_image",
    S.DEPLOYING: "deploy_release",
}
STEP_NAMES = {S.FETCHING: "fetch", S.DETECTING: "detect", S.BUILDING: "build", S.DEPLOYING: "deploy"}


@dataclass
class Swept:
    resumed: int = 0
    requeued: int = 0
    failed: int = 0


def step_time_limit(status: str) -> int:
    """The soft time limit of the step's task, in seconds (settings.TASK_TIME_LIMITS)."""
    return int(settings.TASK_TIME_LIMITS[STEP_TASKS[status]])


def sweep() -> Swept:
    now = timezone.now()
    swept = Swept()
    lease_cutoff = now - timedelta(seconds=settings.STEP_LEASE_SECONDS)
    requeue_cutoff = now - timedelta(seconds=settings.STEP_REQUEUE_SECONDS)
    forgot = broker_forgot()
    if forgot:
        logger.warning("Redis holds no marker of this platform (it restarted empty): queuing again every "
                       "step that was waiting for a worker")
    builds = Build.objects.filter(status__in=list(STEP_TASKS)).only(
        "id", "status", "claimed_step", "claimed_at", "heartbeat_at", "step_resumes", "worker_host"
    )
    for build in builds:
        try:
            if build.claimed_step == build.status:
                if build.heartbeat_at is None or build.heartbeat_at < lease_cutoff:
                    _lease_ran_out(build, swept)
            elif forgot or build.heartbeat_at is None or build.heartbeat_at < requeue_cutoff:
                if requeued(build.id, build.status, build.heartbeat_at):
                    logger.info("build %s: its %s step waited for a worker; queued again", build.id, build.status)
                    _send_step(build, build.status)
                    swept.requeued += 1
        except Exception:  # noqa: BLE001 - one build's trouble must not stop the sweep of the others
            logger.exception("could not sweep build %s", build.id)
    _sweep_releases(swept, lease_cutoff, requeue_cutoff, forgot)
    _sweep_plan_checks(swept, now, requeue_cutoff, forgot)
    return swept


def _sweep_plan_checks(swept: Swept, now, requeue_cutoff, forgot: bool) -> None:
    """The guided deploy's looks at a source: one whose task was lost is sent
    again (its claim makes a duplicate harmless); one taken on longer ago
    than its time limit and a grace (its worker died) fails in words."""
    waiting = PlanCheck.objects.filter(status=PlanCheck.Status.QUEUED)
    if not forgot:
        waiting = waiting.filter(sent_at__lt=requeue_cutoff)
    for check_id in waiting.values_list("id", flat=True):
        if PlanCheck.objects.filter(id=check_id, status=PlanCheck.Status.QUEUED).update(sent_at=now) == 1:
            queue.enqueue("check_plan", check_id)
            swept.requeued += 1
    limit = int(settings.TASK_TIME_LIMITS["check_plan"]) + settings.TASK_KILL_GRACE + settings.STEP_LEASE_SECONDS
    stalled = Diagnosis("pipeline.stalled")
    swept.failed += PlanCheck.objects.filter(
        status=PlanCheck.Status.CHECKING, claimed_at__lt=now - timedelta(seconds=limit)
    ).update(status=PlanCheck.Status.FAILED, failure_rule=stalled.rule, failure_params={},
             failure_reason=stalled.in_english(), finished_at=now)


def _sweep_releases(swept: Swept, lease_cutoff, requeue_cutoff, forgot: bool) -> None:
    """Releases made without a build wait `pending` for start_release, then
    are `deploying` under their worker's lease (releases.start_pending). A
    build's own release (no claimed_at) is its build's deploy step's."""
    R = Release.Status
    waiting = Release.objects.filter(status=R.PENDING) | Release.objects.filter(
        status=R.DEPLOYING, claimed_at__isnull=False
    )
    for release in waiting.only("id", "status", "claimed_at", "heartbeat_at", "start_resumes"):
        try:
            if release.status == R.DEPLOYING:
                if release.heartbeat_at is None or release.heartbeat_at < lease_cutoff:
                    _release_lease_ran_out(release, swept)
            elif forgot or release.heartbeat_at is None or release.heartbeat_at < requeue_cutoff:
                # Its message was lost (Redis restarted empty, or a worker died
                # holding it). A duplicate does nothing (releases.claim_pending).
                if Release.objects.filter(id=release.id, status=R.PENDING, heartbeat_at=release.heartbeat_at).update(
                    heartbeat_at=timezone.now()
                ):
                    logger.info("release %s waited for a worker to start it; queued again", release.id)
                    queue.enqueue("start_release", release.id)
                    swept.requeued += 1
        except Exception:  # noqa: BLE001 - one release's trouble must not stop the sweep of the others
            logger.exception("could not sweep release %s", release.id)


def _release_lease_ran_out(release: Release, swept: Swept) -> None:
    R = Release.Status
    limit = int(settings.TASK_TIME_LIMITS["start_release"])
    seen = release.heartbeat_at
    ran = (seen - release.claimed_at).total_seconds() if seen and release.claimed_at else 0
    diagnosis = None
    if ran >= limit:
        diagnosis = Diagnosis("pipeline.step_timeout", {"step": "start", "seconds": limit})
    elif release.start_resumes >= settings.STEP_MAX_RESUMES:
        diagnosis = Diagnosis("pipeline.worker_lost", {"step": "start", "times": release.start_resumes + 1})
    if diagnosis is not None:
        if Release.objects.filter(id=release.id, status=R.DEPLOYING, heartbeat_at=seen).update(
            status=R.FAILED, **failure_fields(diagnosis)
        ):
            logger.warning("release %s failed to start: %s", release.id, diagnosis.in_english())
            swept.failed += 1
        return
    if not Release.objects.filter(id=release.id, status=R.DEPLOYING, heartbeat_at=seen).update(
        status=R.PENDING, claimed_at=None, heartbeat_at=timezone.now(), start_resumes=F("start_resumes") + 1
    ):
        return  # its worker renewed the lease meanwhile, or another sweeper took it
    logger.warning("release %s: the worker starting it stopped; starting it again", release.id)
    queue.enqueue("start_release", release.id)
    swept.resumed += 1


def _send_step(build: Build, status: str) -> None:
    """Queues the step again; those that read the fetched source go to the
    host that fetched it (hakobune/platform/queue.py, "worker hosts")."""
    task = STEP_TASKS[status]
    host = build.worker_host if task in queue.ON_FETCHING_HOST else None
    queue.enqueue(task, build.id, host=host or None)


def _lease_ran_out(build: Build, swept: Swept) -> None:
    status = build.status
    step = STEP_NAMES[status]
    limit = step_time_limit(status)
    ran = (build.heartbeat_at - build.claimed_at).total_seconds() if build.heartbeat_at and build.claimed_at else 0
    diagnosis = None
    if ran >= limit:
        # It ran until the worker killed it at the hard limit.
        diagnosis = timeout_diagnosis(status, limit)
    elif build.step_resumes >= settings.STEP_MAX_RESUMES:
        diagnosis = Diagnosis("pipeline.worker_lost", {"step": step, "times": build.step_resumes + 1})
    if diagnosis is not None:
        if fail(build.id, diagnosis):
            log = BuildLog(build.id)
            log.write(f"✗ {diagnosis.in_english()}", keep=True)
            log.flush()
            _abandon(build, diagnosis)
            logger.warning("build %s failed at its %s step: %s", build.id, status, diagnosis.in_english())
            swept.failed += 1
        return
    if not take_back(build.id, status, build.heartbeat_at):
        return  # its worker renewed the lease meanwhile, or another sweeper took it
    log = BuildLog(build.id)
    log.write(f"⟳ The worker running the {step} step stopped (resume {build.step_resumes + 1} of "
              f"{settings.STEP_MAX_RESUMES}); the step starts again.", keep=True)
    log.flush()
    logger.warning("build %s: the worker of its %s step stopped; resuming the step", build.id, status)
    _send_step(build, status)
    swept.resumed += 1


def timeout_diagnosis(status: str, seconds: int) -> Diagnosis:
    if status == S.BUILDING:
        return Diagnosis("build.timed_out", {"seconds": seconds})
    return Diagnosis("pipeline.step_timeout", {"step": STEP_NAMES.get(status, status), "seconds": seconds})


def _abandon(build: Build, diagnosis: Diagnosis) -> None:
    """What a failed build's dead worker left: its workspace, and the release
    it was starting (whose instances the reconciler removes: they belong to
    no live release)."""
    shutil.rmtree(workspace_dir(build.id), ignore_errors=True)
    Release.objects.filter(build_id=build.id, status=Release.Status.DEPLOYING).update(
        status=Release.Status.FAILED, **failure_fields(diagnosis)
    )


# -- whether Redis lost what it held -------------------------------------------------------


def marker_key() -> str:
    return f"hakobune:broker-marker:{settings.CELERY_TASK_DEFAULT_QUEUE}"


def broker_forgot() -> bool:
    """True when Redis holds no marker of this platform: it restarted empty
    (the Redis here keeps nothing on disk) or this is the first sweep, so any
    message it held is gone. The marker is set again at once."""
    try:
        return bool(redis_client().set(marker_key(), "1", nx=True))
    except redis.RedisError as exc:
        logger.warning("the sweeper cannot reach Redis: %s", exc)
        return False
