"""The Celery tasks: thin entry points, one per pipeline step or
housekeeping job. Each takes one id (or none), and calls a platform action
that claims its work; nothing imports this module (the platform sends tasks
by name, hakobune/platform/queue.py).

A step that met a passing fault raises RetryStep; it is retried here, with
the backoff the platform chose. Every task's time limits come from
settings.TASK_TIME_LIMITS (CELERY_TASK_ANNOTATIONS)."""

from celery import shared_task

from hakobune.platform.addons import actions as addon_actions
from hakobune.platform.addons import backups
from hakobune.platform.builds import admission, pipeline, plan_check, sweeper
from hakobune.platform.failures import MAX_ATTEMPTS, RetryStep
from hakobune.platform.notifications import delivery
from hakobune.platform.observability import collectors, logstore
from hakobune.platform.services import housekeeping, jobs, one_off, releases, team_networks
from hakobune.platform.volumes import actions as volume_actions


def _attempt(task, action, *args, max_attempts: int = MAX_ATTEMPTS) -> None:
    try:
        action(*args, attempt=task.request.retries + 1)
    except RetryStep as retry:
        raise task.retry(countdown=retry.countdown, max_retries=max_attempts)


# -- the deploy pipeline -------------------------------------------------------------


@shared_task(bind=True)
def fetch_source(self, build_id: int) -> None:
    _attempt(self, pipeline.fetch_source, build_id)


@shared_task(bind=True)
def detect_stack(self, build_id: int) -> None:
    _attempt(self, pipeline.detect_stack, build_id)


@shared_task
def check_plan(check_id: int) -> None:
    plan_check.check_plan(check_id)


@shared_task(bind=True)
def build_image(self, build_id: int) -> None:
    _attempt(self, pipeline.build_image, build_id)


@shared_task(bind=True)
def deploy_release(self, build_id: int) -> None:
    _attempt(self, pipeline.deploy_release, build_id)


@shared_task(bind=True)
def start_release(self, release_id: int) -> None:
    _attempt(self, releases.start_pending, release_id)


@shared_task
def admit_builds() -> None:
    admission.admit_builds()


@shared_task
def stop_build(build_id: int) -> None:
    pipeline.stop_build_work(build_id)


@shared_task
def sweep_pipeline() -> None:
    sweeper.sweep()


# -- one service or stack --------------------------------------------------------------


@shared_task
def destroy_service(service_id: int) -> None:
    housekeeping.destroy_service(service_id)


@shared_task
def destroy_team(team_id: int) -> None:
    housekeeping.destroy_team(team_id)


@shared_task
def grow_team_network(team_id: int, user_id: int | None = None) -> None:
    team_networks.grow_by_id(team_id, user_id)


@shared_task
def provision_addon(addon_id: int) -> None:
    addon_actions.provision(addon_id)


@shared_task
def remove_addon(addon_id: int) -> None:
    addon_actions.remove(addon_id)


@shared_task
def provision_volume(volume_id: int) -> None:
    volume_actions.provision(volume_id)


@shared_task
def remove_volume(volume_id: int, attempt: int = 1) -> None:
    volume_actions.remove(volume_id, attempt)


@shared_task
def measure_volumes() -> None:
    volume_actions.measure_all()


@shared_task
def rebuild_stack(language: str, user_id: int | None = None) -> None:
    housekeeping.rebuild_stack(language, user_id)


# -- housekeeping ----------------------------------------------------------------------


@shared_task
def reconcile() -> None:
    housekeeping.reconcile()


@shared_task
def sync_router() -> None:
    housekeeping.sync_router()


@shared_task
def scale_idle_to_zero() -> None:
    housekeeping.scale_idle_to_zero()


@shared_task
def prune_images() -> None:
    housekeeping.prune()


@shared_task
def run_jobs() -> None:
    """Scheduled jobs: ended runs recorded, due ones started (never waited
    for); and one-off commands whose terminal's portal process died, ended."""
    jobs.tick()
    one_off.end_abandoned_runs()


@shared_task
def collect_metrics() -> None:
    collectors.collect_on_schedule()


@shared_task
def roll_up_metrics() -> None:
    collectors.roll_up()


@shared_task
def prune_logs() -> None:
    logstore.prune()


@shared_task(bind=True)
def deliver_notification(self, delivery_id: int) -> None:
    _attempt(self, delivery.deliver, delivery_id, max_attempts=delivery.max_attempts())


# -- backups of add-ons ------------------------------------------------------------------


@shared_task
def run_backup(backup_id: int) -> None:
    backups.run_backup(backup_id)


@shared_task
def restore_backup(restore_id: int) -> None:
    backups.run_restore(restore_id)


@shared_task
def schedule_backups() -> None:
    """Due scheduled backups made and queued; lost ones queued again."""
    backups.tick()


@shared_task
def recover_notifications() -> None:
    delivery.recover()
