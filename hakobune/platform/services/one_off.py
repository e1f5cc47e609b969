"""One-off commands a person runs at their terminal (`hakobune run -- CMD`):
a one-off container of the service's live release, with its environment and
network, attached to the terminal through the portal (api/terminal.py
relays it). This module decides who may, records what ran and by whom, and
ends runs that lost their terminal."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from hakobune.platform.accounts.models import Role
from hakobune.platform.observability.events import record_event
from hakobune.runtime.base import AttachedOneOff, RuntimeBackendError, ServiceRef

from .access import service_for
from .backends import backend_for
from .models import OneOffRun, Service
from .releases import deploy_spec

logger = logging.getLogger(__name__)

MAX_COMMAND_LENGTH = 1000


class OneOffRefused(Exception):
    """Why a one-off cannot run, in a sentence; `code` for the API."""

    def __init__(self, message: str, code: str = "refused"):
        super().__init__(message)
        self.message = message
        self.code = code


def open_run(user, team: str, service_name: str, command: str, *, tty: bool) -> OneOffRun:
    """Records a run of `command` by `user`, once they may run it. Raises
    Http404 for a team or service that is not theirs, PermissionDenied for
    viewers, OneOffRefused for anything else."""
    _, service = service_for(user, team, service_name, Role.DEVELOPER, "run commands")
    command = (command or "").strip()
    if not command:
        raise OneOffRefused("Give the command to run after `--`, like `hakobune run -- python manage.py shell`.",
                            "no_command")
    if len(command) > MAX_COMMAND_LENGTH or "\x00" in command:
        raise OneOffRefused(f"The command must be at most {MAX_COMMAND_LENGTH} characters, with no NUL byte.",
                            "bad_command")
    if service.live_release is None:
        raise OneOffRefused(f"{service.name} has no live release to run the command in: deploy it first.",
                            "not_deployed")
    backend = backend_for(service)
    if "attach" not in backend.capabilities:
        raise OneOffRefused(
            f"Commands attached to a terminal run on this host's runtime only; {service.name} runs on "
            f"{service.target}. Run it there (for Cloud Run, as a Cloud Run job).", "not_supported")
    running = OneOffRun.objects.filter(service__team=service.team, status=OneOffRun.Status.RUNNING).count()
    if running >= settings.RUN_MAX_OPEN_PER_TEAM:
        raise OneOffRefused(
            f"Team {service.team.name} already has {running} commands running, as many as it may at once. "
            "Wait for one to end.", "too_many_runs")
    run = OneOffRun.objects.create(
        service=service, release=service.live_release, command=command, tty=tty,
        started_by=user, started_by_name=user.get_username(),
    )
    record_event("run.started", service=service, actor=user, command=command[:200],
                 release=service.live_release.number)
    return run


def attach(run: OneOffRun, *, rows: int, cols: int) -> AttachedOneOff:
    """Starts the run's container, attached. A failure ends the run as failed
    and raises OneOffRefused with the reason."""
    service = Service.objects.select_related("team", "live_release__build").get(id=run.service_id)
    try:
        spec = deploy_spec(service, run.release or service.live_release)
        session = backend_for(service).attach_one_off(spec, run.command, tty=run.tty, rows=rows, cols=cols)
    except RuntimeBackendError as exc:
        finish(run, OneOffRun.Status.FAILED, detail=f"it could not start: {exc.message}")
        raise OneOffRefused(f"The command could not start: {exc.message}", "not_started") from exc
    OneOffRun.objects.filter(id=run.id).update(container_id=session.container_id)
    return session


def finish(run: OneOffRun, status: str, *, exit_code: int | None = None, detail: str = "") -> None:
    OneOffRun.objects.filter(id=run.id, status=OneOffRun.Status.RUNNING).update(
        status=status, exit_code=exit_code, detail=detail[:300], ended_at=timezone.now()
    )


def end_abandoned_runs(now=None) -> int:
    """Runs still marked running well past the time a run may take (their
    portal process died): ended, and their containers removed."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.RUN_MAX_SECONDS + 120)
    ended = 0
    for run in OneOffRun.objects.filter(status=OneOffRun.Status.RUNNING, started_at__lt=limit).select_related(
        "service__team"
    ):
        handle = run.container_id
        if handle:
            try:
                backend_for(run.service).one_off_result(ServiceRef(run.service.team.name, run.service.name), handle, stop=True)
            except RuntimeBackendError as exc:
                logger.warning("could not stop the one-off %s of %s: %s", handle[:12], run.service, exc)
        finish(run, OneOffRun.Status.DISCONNECTED, detail="its terminal went away and the portal did not end it")
        ended += 1
    return ended
