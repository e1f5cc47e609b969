"""Scheduled jobs: hakobune.toml's [[jobs]] (a name, a cron schedule in UTC,
a command) run as one-off containers of the service's live release, with
its environment and team network.

Celery beat sends `run_jobs` every JOBS_TICK_SECONDS (housekeeping queue).
Each pass first reads the runs that are running (`finish`): an ended one gets
its exit code, times and last lines, and its container goes; one past
JOB_TIMEOUT is killed and fails. Then it starts the runs that are due
(`start_due`): for each job, the latest tick of its schedule, when it is not
older than JOB_CATCH_UP_SECONDS (a platform that was down does not run a
backlog) and has no run yet. No worker waits for a job to end, so a long job
holds up nothing.

Never two at once per job: the database refuses a second `running` run of a
job (a conditional unique constraint), so a tick that finds the previous run
still running is recorded as skipped, whatever the number of schedulers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from croniter import croniter
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from hakobune.runtime.base import RuntimeBackendError, ServiceRef

from .backends import backend_for
from .models import DesiredState, JobRun, Release, Service
from .releases import deploy_spec

logger = logging.getLogger(__name__)

LOG_LINES = 200


def jobs_of(service: Service) -> list[dict]:
    """The jobs of the service's live release: [{name, schedule, command}]."""
    live = service.live_release
    if live is None or not live.build_id:
        return []
    return [dict(job) for job in (live.build.plan or {}).get("jobs") or []]


def last_tick(schedule: str, now: datetime) -> datetime:
    """The latest tick of the schedule at or before `now` (UTC)."""
    now = now.astimezone(UTC)
    if croniter.match(schedule, now.replace(second=0, microsecond=0)):
        return now.replace(second=0, microsecond=0)
    return croniter(schedule, now).get_prev(datetime)


def next_tick(schedule: str, now: datetime) -> datetime:
    return croniter(schedule, now.astimezone(UTC)).get_next(datetime)


def tick(now: datetime | None = None) -> None:
    """One pass of the scheduler: ended runs recorded, due runs started."""
    now = now or timezone.now()
    finish(now)
    start_due(now)


def finish(now: datetime | None = None) -> None:
    now = now or timezone.now()
    for run in JobRun.objects.filter(status=JobRun.Status.RUNNING).select_related("service__team"):
        service = run.service
        too_long = run.started_at is not None and now - run.started_at > timedelta(seconds=settings.JOB_TIMEOUT)
        if not run.handle:
            # Its start never got as far as the runtime (the worker died).
            if now - (run.started_at or run.scheduled_for) > timedelta(minutes=5):
                _end(run, JobRun.Status.FAILED, detail="it never started", ended_at=now)
            continue
        try:
            result = backend_for(service).one_off_result(
                ServiceRef(service.team.name, service.name), run.handle, stop=too_long
            )
        except RuntimeBackendError as exc:
            logger.warning("job %s: could not look at its container: %s", run, exc.message)
            continue
        if result is None:
            continue
        if result.lost:
            _end(run, JobRun.Status.FAILED, detail="its container was gone before it could be read", ended_at=now)
        elif result.timed_out:
            _end(run, JobRun.Status.FAILED, detail=f"it ran longer than {settings.JOB_TIMEOUT} s and was stopped",
                 log=result.tail, ended_at=result.finished_at or now)
        else:
            _end(run, JobRun.Status.SUCCEEDED if result.exit_code == 0 else JobRun.Status.FAILED,
                 exit_code=result.exit_code, log=result.tail, ended_at=result.finished_at or now,
                 started_at=result.started_at or run.started_at,
                 detail="" if result.exit_code == 0 else f"it exited with code {result.exit_code}")


def _end(run: JobRun, status: str, *, log: list[str] | None = None, **fields) -> None:
    JobRun.objects.filter(id=run.id, status=JobRun.Status.RUNNING).update(
        status=status, log="\n".join((log or [])[-LOG_LINES:]), **fields
    )


def start_due(now: datetime | None = None) -> list[JobRun]:
    """Starts each job whose latest tick is due and has no run yet; returns the runs made (skipped ones too)."""
    now = now or timezone.now()
    made = []
    services = (
        Service.objects.filter(desired_state=DesiredState.RUNNING, live_release__status=Release.Status.LIVE)
        .select_related("team", "live_release__build")
    )
    for service in services:
        jobs = jobs_of(service)
        if not jobs:
            continue
        try:
            backend = backend_for(service)
        except RuntimeBackendError:
            continue
        if "one_off" not in backend.capabilities:
            continue
        for job in jobs:
            due = last_tick(job["schedule"], now)
            if now - due > timedelta(seconds=settings.JOB_CATCH_UP_SECONDS):
                continue
            run = _claim(service, job, due, now)
            if run is None:
                continue
            made.append(run)
            if run.status == JobRun.Status.RUNNING:
                _start(run, service, backend)
    return made


def _claim(service: Service, job: dict, due: datetime, now: datetime) -> JobRun | None:
    """The run of this tick, made once: running, or skipped when the job's
    previous run still runs. None when the tick has its run already."""
    fields = dict(service=service, release=service.live_release, job=job["name"], command=job["command"],
                  schedule=job["schedule"], scheduled_for=due)
    if JobRun.objects.filter(service=service, job=job["name"], scheduled_for=due).exists():
        return None
    try:
        with transaction.atomic():
            return JobRun.objects.create(**fields, status=JobRun.Status.RUNNING, started_at=now)
    except IntegrityError:
        pass
    try:
        with transaction.atomic():
            run = JobRun.objects.create(
                **fields, status=JobRun.Status.SKIPPED, started_at=now, ended_at=now,
                detail="its previous run was still running",
            )
    except IntegrityError:  # another scheduler made this tick's run meanwhile
        return None
    logger.info("job %s skipped: its previous run is still running", run)
    return run


def _start(run: JobRun, service: Service, backend) -> None:
    try:
        spec = deploy_spec(service, service.live_release)
        handle = backend.start_one_off(spec, run.command, purpose=f"job-{run.job}")
    except RuntimeBackendError as exc:
        _end(run, JobRun.Status.FAILED, detail=f"it could not start: {exc.message}"[:300], ended_at=timezone.now())
        return
    JobRun.objects.filter(id=run.id).update(handle=handle)
    run.handle = handle
    logger.info("job %s started", run)


def history(service: Service, *, runs_per_job: int = 10) -> list[dict]:
    """Each job of the live release with its next tick and its latest runs,
    for the service page and the API."""
    now = timezone.now()
    found = []
    for job in jobs_of(service):
        runs = list(JobRun.objects.filter(service=service, job=job["name"])[:runs_per_job])
        found.append({**job, "next_run": next_tick(job["schedule"], now), "runs": runs})
    return found
