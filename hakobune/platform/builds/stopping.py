"""Ending a build before it deploys: cancelled by a person, or superseded
by a newer deploy of its service (the later deploy wins).

The status is changed first, with a conditional UPDATE (state.stop), so
whatever step the build is in finds its claim gone and does nothing more; then
what it still runs is stopped: its own worker sees the status (its log, the
build's watch, git's watcher; pipeline.stop_check) and kills its step, and a
`stop_build` task kills its build containers from outside and removes its
workspace. A build already deploying is not stopped: the deploy lock
serializes it with the newer one, which replaces it once live."""

from __future__ import annotations

from hakobune.platform import queue
from hakobune.platform.governance.reviews import close_review

from .log import BuildLog
from .models import STOPPABLE, Build, BuildStatus
from .state import stop

S = BuildStatus


def stop_build(build: Build, to_status: str, line: str, *, review_note: str = "", by=None) -> bool:
    """Ends the build as `to_status` (cancelled or superseded) if it has not
    reached its deploy, as `by` (a person) asked; `line` goes into its log. A
    build that waited for an administrator's review closes the review
    (nothing waits for it any more), with `review_note` as the reason.
    Returns whether it did."""
    was = stop(build.id, to_status, by=by)
    if was is None:
        return False
    with BuildLog(build.id) as log:
        log.write(line, keep=True)
    if was == S.REVIEWING:
        close_review(build.service, review_note or line.lstrip("⊘ "))
    if was != S.QUEUED:
        queue.enqueue_on_commit("stop_build", build.id)  # its containers, processes and workspace
    queue.enqueue_on_commit("admit_builds")  # its slot, or its place in the queue, is free
    return True


def supersede_earlier(build: Build) -> list[int]:
    """Ends the service's earlier builds that have not reached their deploy, in
    favour of `build`, the newest. Returns their numbers."""
    earlier = Build.objects.filter(service_id=build.service_id, number__lt=build.number, status__in=STOPPABLE)
    superseded = []
    for older in earlier.order_by("number"):
        if stop_build(older, S.SUPERSEDED, f"⊘ Superseded by deploy #{build.number}: a newer deploy of this service "
                                            "was accepted, and the newest deploy wins. Nothing of this one goes live.",
                      review_note=f"Deploy #{older.number}, which waited for this review, was superseded by deploy "
                                  f"#{build.number}. The review opens again once that one is built.",
                      by=build.created_by):
            superseded.append(older.number)
    return superseded
