"""The plan of a source before anything is built (the guided first deploy):
a worker fetches the source as a build's fetch step would (archive or git,
under the same limits and address policy), runs the same detection as the
detect step, with the service's settings over it, and stops there. The plan
it found is stored on the PlanCheck for the person to read; nothing is
built or started.

    queued → checking → done   (or failed, with a diagnosis)

A check is claimed with a conditional UPDATE, so a task delivered twice
checks once; the sweeper sends a check whose task was lost again, and fails
one whose worker died (builds/sweeper.py). A git source's tree is kept as a snapshot (.tar.gz) on the
check, so that the deploy of the plan builds the very commit that was shown."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from hakobune.platform.diagnoses import Diagnosis, diagnose
from hakobune.worker import source
from hakobune.worker.buildpacks import detect, java, versions

from . import images
from .models import PlanCheck
from .pipeline import _with_service_settings, fetch_service_git, source_limits

logger = logging.getLogger(__name__)
Status = PlanCheck.Status


def workspace_of(check_id: int) -> Path:
    return Path(settings.WORKSPACE_DIR) / f"plan-{check_id}"


class _Quiet:
    """A build log that keeps nothing: the plan's notes are on the check."""

    def write(self, *args, **kwargs):
        pass


def check_plan(check_id: int, *, attempt: int = 1) -> None:
    if PlanCheck.objects.filter(id=check_id, status=Status.QUEUED).update(
            status=Status.CHECKING, claimed_at=timezone.now()) != 1:
        return
    check = PlanCheck.objects.select_related("service__team").get(id=check_id)
    workspace = workspace_of(check_id)
    shutil.rmtree(workspace, ignore_errors=True)
    try:
        if check.source_kind == "git" and not check.source_archive:
            tree = _fetch_git(check, workspace)
        else:
            tree = source.extract_archive(Path(check.source_archive.path), workspace / "src", source_limits()).root
        root = source.select_subdir(tree, check.source_subdir)
        service = check.service
        detection = detect(root, build_env=images.google_build_env(service))
        plan = _with_service_settings(detection.plan, service, _Quiet())
        plan = java.with_repository(plan, settings.MAVEN_REPOSITORY)
        plan, _chosen = versions.fit_stack(plan, images.builder_for(service).stack_offers)
        PlanCheck.objects.filter(id=check_id).update(
            status=Status.DONE, stack=detection.stack, detection_reason=detection.reason, plan=plan.to_dict(),
            finished_at=timezone.now(),
        )
    except SoftTimeLimitExceeded:
        _failed(check_id, Diagnosis("pipeline.internal", {"error": "the check of the source took too long"}))
    except Exception as exc:  # noqa: BLE001 - every failure is told to the person, in words
        diagnosis = diagnose(exc)
        if diagnosis.rule == "pipeline.internal":
            logger.error("plan check %s failed", check_id, exc_info=exc)
        _failed(check_id, diagnosis)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _failed(check_id: int, diagnosis: Diagnosis) -> None:
    PlanCheck.objects.filter(id=check_id).update(
        status=Status.FAILED, failure_rule=diagnosis.rule, failure_params=diagnosis.params,
        failure_reason=diagnosis.in_english(), finished_at=timezone.now(),
    )


def _fetch_git(check: PlanCheck, workspace: Path) -> Path:
    service = check.service
    fetched = fetch_service_git(service, check.git_url, check.git_ref, workspace / "src", log=lambda line: None)
    snapshot = f"sources/{service.team.name}/{service.name}/plan-{check.id}-{fetched.commit[:12]}.tar.gz"
    source.pack_tree(fetched.root, Path(settings.MEDIA_ROOT) / snapshot)
    PlanCheck.objects.filter(id=check.id).update(source_archive=snapshot, git_commit=fetched.commit)
    return fetched.root
