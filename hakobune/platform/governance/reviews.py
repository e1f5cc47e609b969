"""Review of new services: where the platform or a team asks for it, a
service's first deploy is built and then waits until an administrator
approves it; later deploys of an approved service go straight through."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import advance, fail, failure_fields
from hakobune.platform.diagnoses import Diagnosis
from hakobune.platform.observability.events import record_event
from hakobune.platform.queue import enqueue_on_commit

from .models import ServiceReview, TeamPolicy
from .quotas import policy_of


class ReviewError(Exception):
    pass


def review_required(team) -> bool:
    policy = policy_of(team)
    if policy and policy.review:
        return policy.review == TeamPolicy.Review.REQUIRED
    return settings.REVIEW_NEW_SERVICES


def needs_review(service) -> bool:
    """Whether a build of `service` waits for an administrator before it deploys."""
    if not review_required(service.team):
        return False
    review = ServiceReview.objects.filter(service=service).first()
    return review is None or review.status != ServiceReview.Status.APPROVED


def request_review(service) -> ServiceReview:
    """Puts the service in the review queue (again, after a rejection)."""
    review, created = ServiceReview.objects.get_or_create(service=service)
    if not created and review.status in (ServiceReview.Status.REJECTED, ServiceReview.Status.CLOSED):
        ServiceReview.objects.filter(id=review.id).update(
            status=ServiceReview.Status.PENDING, requested_at=timezone.now(), note="", reviewed_by=None,
            reviewed_at=None,
        )
    return review


def close_review(service, why: str) -> bool:
    """Closes the service's open review once no build of it waits for one
    any more (the one that waited was superseded or cancelled), saying why:
    an administrator is not asked to decide on a deploy that is gone. The
    service's next build that needs a review opens it again."""
    if waiting_builds(service).exists():
        return False
    return ServiceReview.objects.filter(service=service, status=ServiceReview.Status.PENDING).update(
        status=ServiceReview.Status.CLOSED, note=why, reviewed_by=None, reviewed_at=timezone.now()
    ) == 1


def waiting_builds(service):
    return Build.objects.filter(service=service, status=BuildStatus.REVIEWING)


def approve(*, service, by, note: str = "") -> list[int]:
    """Approves the service; its newest build waiting for review deploys now
    (older waiting ones are cancelled). Returns the ids of those that deploy."""
    _check_reviewer(by)
    ServiceReview.objects.update_or_create(
        service=service,
        defaults={"status": ServiceReview.Status.APPROVED, "note": note, "reviewed_by": by, "reviewed_at": timezone.now()},
    )
    record_event("review.approved", service=service, actor=by, note=note)
    # Only the newest waiting deploy goes on; older ones it replaces end here.
    *older, newest = list(waiting_builds(service).order_by("number").values_list("id", "number")) or [(None, None)]
    for build_id, _ in older:
        advance(build_id, BuildStatus.REVIEWING, BuildStatus.CANCELLED, by=by,
                **failure_fields(Diagnosis("review.replaced", {"number": newest[1]})))
    if newest[0] is not None and advance(newest[0], BuildStatus.REVIEWING, BuildStatus.DEPLOYING):
        enqueue_on_commit("deploy_release", newest[0])
        return [newest[0]]
    return []


def reject(*, service, by, note: str) -> list[int]:
    """Does not approve the service, saying why; its waiting builds fail with the note."""
    _check_reviewer(by)
    note = (note or "").strip()
    if not note:
        raise ReviewError("Say why, so that the team knows what to change.")
    ServiceReview.objects.update_or_create(
        service=service,
        defaults={"status": ServiceReview.Status.REJECTED, "note": note, "reviewed_by": by, "reviewed_at": timezone.now()},
    )
    record_event("review.rejected", service=service, actor=by, note=note)
    failed = []
    for build_id in waiting_builds(service).values_list("id", flat=True):
        if fail(build_id, Diagnosis("review.rejected", {"note": note}), by=by):
            failed.append(build_id)
    return failed


def _check_reviewer(user) -> None:
    if not user.is_staff:
        raise ReviewError("Only administrators review services.")
