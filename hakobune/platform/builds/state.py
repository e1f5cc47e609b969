"""The build status machine. Every change of a build's status goes through
`advance`, a conditional UPDATE that succeeds for exactly one caller. A step's
worker first `claim`s the step (another conditional UPDATE), so a task
delivered twice does its work only once. A claim is a lease: the worker
renews it while the step runs (`renew`), and the sweeper takes back one that
ran out (`take_back`, builds/sweeper.py)."""

from django.db.models import F
from django.utils import timezone

from hakobune.platform.notifications import alerts
from hakobune.platform.observability.events import record_build_change

from .models import FINISHED, STOPPABLE, STOPPED, Build, BuildStatus

S = BuildStatus
# The changes that are events of the build's service.
RECORDED = (*FINISHED, S.REVIEWING)

TRANSITIONS = {
    S.QUEUED: {S.FETCHING, S.FAILED, S.CANCELLED, S.SUPERSEDED},
    S.FETCHING: {S.DETECTING, S.FAILED, S.CANCELLED, S.SUPERSEDED},
    S.DETECTING: {S.BUILDING, S.FAILED, S.CANCELLED, S.SUPERSEDED},
    S.BUILDING: {S.DEPLOYING, S.REVIEWING, S.FAILED, S.CANCELLED, S.SUPERSEDED},
    S.REVIEWING: {S.DEPLOYING, S.FAILED, S.CANCELLED, S.SUPERSEDED},
    # Superseded here only when a newer build of the service went live first
    # (pipeline.deploy_release, under the deploy lock).
    S.DEPLOYING: {S.LIVE, S.FAILED, S.SUPERSEDED},
    S.LIVE: set(),
    S.FAILED: set(),
    S.CANCELLED: set(),
    S.SUPERSEDED: set(),
}


class InvalidTransition(Exception):
    pass


def advance(build_id: int, from_status: str, to_status: str, *, by=None, **fields) -> bool:
    """Moves the build from `from_status` to `to_status` if it is still in
    `from_status`. Returns whether this call made the change. The change that
    ends a build, or makes it wait for review, is an event of its service,
    done by `by` (a person who cancelled or reviewed it) or else by Hakobune."""
    if to_status not in TRANSITIONS[from_status]:
        raise InvalidTransition(f"a build cannot go from {from_status} to {to_status}")
    now = timezone.now()
    fields["status_changed_at"] = now
    if from_status == S.QUEUED and to_status == S.FETCHING:
        fields["started_at"] = now
    fields.setdefault("claimed_step", "")
    # A step is claimed with its move (fetching) or queued for a worker.
    fields["claimed_at"] = now if fields["claimed_step"] else None
    fields["heartbeat_at"] = now
    fields["step_resumes"] = 0
    if to_status in FINISHED:
        fields["finished_at"] = now
    changed = Build.objects.filter(id=build_id, status=from_status).update(status=to_status, **fields) == 1
    if changed and to_status in RECORDED:
        record_build_change(build_id, to_status, by=by)
    return changed


def claim(build_id: int, status: str) -> bool:
    """Takes on the work of the build's current step. The step's status is set
    by the step before; exactly one worker gets True for it."""
    now = timezone.now()
    return (
        Build.objects.filter(id=build_id, status=status)
        .exclude(claimed_step=status)
        .update(claimed_step=status, claimed_at=now, heartbeat_at=now)
        == 1
    )


def renew(build_id: int, status: str) -> bool:
    """Renews the lease of a claimed step: the worker running it is alive.
    False when the step is no longer this worker's (the build moved on,
    failed, or the sweeper took the step back)."""
    return (
        Build.objects.filter(id=build_id, status=status, claimed_step=status).update(heartbeat_at=timezone.now())
        == 1
    )


def take_back(build_id: int, status: str, heartbeat_at) -> bool:
    """Gives back the claim of a step whose worker stopped renewing it (its
    lease as last seen: `heartbeat_at`), counting the resume; the step is
    then queued again. Exactly one sweeper gets True."""
    return Build.objects.filter(
        id=build_id, status=status, claimed_step=status, heartbeat_at=heartbeat_at
    ).update(claimed_step="", claimed_at=None, heartbeat_at=timezone.now(), step_resumes=F("step_resumes") + 1) == 1


def requeued(build_id: int, status: str, heartbeat_at) -> bool:
    """Notes that an unclaimed step (its message lost) was queued again.
    Exactly one sweeper gets True."""
    return Build.objects.filter(id=build_id, status=status, claimed_step="", heartbeat_at=heartbeat_at).update(
        heartbeat_at=timezone.now()
    ) == 1


def fail(build_id: int, diagnosis, *, by=None) -> bool:
    """Marks an unfinished build failed with a diagnosis (see
    hakobune/platform/diagnoses.py) that says what a person can do. Returns
    False when the build had already finished."""
    for _ in range(5):  # the status may move on between the read and the update
        status = Build.objects.values_list("status", flat=True).get(id=build_id)
        if status in FINISHED:
            return False
        if advance(build_id, status, S.FAILED, by=by, failed_step=status, **failure_fields(diagnosis)):
            alerts.deploy_failed(build_id)
            return True
    return False


def stop(build_id: int, to_status: str, *, among=STOPPABLE, by=None) -> str | None:
    """Ends an unfinished build as cancelled or superseded, from whichever of
    `among` it is in. Returns the status it was stopped in, or None when it had
    already moved past them (finished, or deploying)."""
    for _ in range(5):  # the status may move on between the read and the update
        status = Build.objects.values_list("status", flat=True).get(id=build_id)
        if status not in among:
            return None
        if advance(build_id, status, to_status, by=by, failed_step=status):
            return status
    return None


def is_stopped(build_id: int) -> bool:
    """Whether the build was cancelled or superseded: its steps stop."""
    return Build.objects.filter(id=build_id, status__in=STOPPED).exists()


def failure_fields(diagnosis) -> dict:
    """The columns a diagnosis is stored in, on a build or a release."""
    return {
        "failure_rule": diagnosis.rule,
        "failure_params": diagnosis.params,
        "failure_reason": diagnosis.in_english(),
    }


def release_claim(build_id: int, status: str) -> bool:
    """Gives the step's claim back, so that a retry of the step can take it."""
    return Build.objects.filter(id=build_id, status=status, claimed_step=status).update(
        claimed_step="", claimed_at=None, heartbeat_at=timezone.now()
    ) == 1
