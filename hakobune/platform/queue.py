"""The one place the platform hands work to the workers. Tasks are sent by
name, so the platform never imports the task modules (they sit above it and
call its actions); `TASKS` lists every name the platform may send, and
`tests/unit/test_layers.py` checks that each one exists in
`hakobune.worker.tasks`.

Queues by purpose: every task has one (`ROUTES`), and its queue is the
platform's prefix (settings.CELERY_TASK_DEFAULT_QUEUE, the CELERY_QUEUE
variable) and the purpose: `<prefix>.pipeline` for the short steps a person
waits on, `<prefix>.builds` for image builds, `<prefix>.housekeeping` for
what the scheduler starts. Each purpose has workers of its own
(scripts/start.sh), so a deploy never waits behind a collection or a build.
Celery asks `route` (settings.CELERY_TASK_ROUTES) for every task it sends;
a task without a purpose is refused there, and tests/unit/test_queues.py
fails for it.

Worker hosts: the steps after the fetch read the unpacked source from the
fetching host's workspace, so they go to that host's own queue,
`<prefix>.host.<name>`, which the host's build worker consumes besides the
shared ones (hakobune/platform/celery.py)."""

from __future__ import annotations

import re

from celery import current_app
from django.conf import settings
from django.db import transaction

TASK_MODULE = "hakobune.worker.tasks"

PIPELINE, BUILDS, HOUSEKEEPING = "pipeline", "builds", "housekeeping"
PURPOSES = (PIPELINE, BUILDS, HOUSEKEEPING)

# Every task of hakobune.worker.tasks and its purpose.
ROUTES = {
    # Short steps a person waits on: seconds each.
    "fetch_source": PIPELINE,
    "detect_stack": PIPELINE,
    # The guided deploy's look at a source: fetch and detect, nothing built.
    "check_plan": PIPELINE,
    "deploy_release": PIPELINE,
    "start_release": PIPELINE,
    "destroy_service": PIPELINE,
    "destroy_team": PIPELINE,
    # Moving a team to a larger network block: its services stop and start again.
    "grow_team_network": PIPELINE,
    # Starting and removing an add-on's container: seconds once its image is on this host.
    "provision_addon": PIPELINE,
    "remove_addon": PIPELINE,
    # Making a volume (a helper container gives it to the app's user) and deleting one: seconds.
    "provision_volume": PIPELINE,
    "remove_volume": PIPELINE,
    # Admission and stopping a cancelled build: never behind the builds they admit or stop.
    "admit_builds": PIPELINE,
    "stop_build": PIPELINE,
    # The sweeper resumes steps whose worker died: seconds, and never behind housekeeping.
    "sweep_pipeline": PIPELINE,
    # Minutes each, bounded by the build workers' concurrency.
    "build_image": BUILDS,
    "rebuild_stack": BUILDS,
    # Backups of add-ons and restores: a dump, an upload and a check by a restore, minutes for a large one.
    "run_backup": BUILDS,
    "restore_backup": BUILDS,
    # What the scheduler starts; never in a deploy's way.
    "collect_metrics": HOUSEKEEPING,
    "roll_up_metrics": HOUSEKEEPING,
    "prune_logs": HOUSEKEEPING,
    "reconcile": HOUSEKEEPING,
    "sync_router": HOUSEKEEPING,
    "scale_idle_to_zero": HOUSEKEEPING,
    "prune_images": HOUSEKEEPING,
    # What each team's volumes hold, for its disk quota: one helper container per team.
    "measure_volumes": HOUSEKEEPING,
    # Scheduled jobs: starts and reads one-off containers, never waits for one.
    "run_jobs": HOUSEKEEPING,
    # Due scheduled backups made and queued (the backups themselves run on the builds queue).
    "schedule_backups": HOUSEKEEPING,
    # Notifications: seconds each, never in a deploy's way (the deploy they report on has ended).
    "deliver_notification": HOUSEKEEPING,
    "recover_notifications": HOUSEKEEPING,
}

TASKS = frozenset({
    "fetch_source", "detect_stack", "build_image", "deploy_release", "start_release",
    "destroy_service", "destroy_team", "sync_router", "reconcile", "rebuild_stack", "prune_images",
    "admit_builds", "stop_build", "sweep_pipeline", "run_jobs", "deliver_notification", "recover_notifications",
    "provision_addon", "remove_addon", "check_plan", "run_backup", "restore_backup", "schedule_backups",
    "provision_volume", "remove_volume", "measure_volumes", "grow_team_network",
})

# The steps that read the fetched source, and so run on the host that fetched it.
ON_FETCHING_HOST = frozenset({"detect_stack", "build_image"})


def prefix() -> str:
    return settings.CELERY_TASK_DEFAULT_QUEUE


def queue_of(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"there is no queue for {purpose!r}")
    return f"{prefix()}.{purpose}"


def host_name(name: str) -> str:
    """A worker host's name as it may stand in a queue's name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:63] or "host"


def host_queue(host: str) -> str:
    return f"{prefix()}.host.{host_name(host)}"


def this_host() -> str:
    return host_name(settings.WORKER_HOST)


def short_name(name: str) -> str:
    return name.removeprefix(f"{TASK_MODULE}.")


def route(name, args=None, kwargs=None, options=None, task=None, **kw):
    """Celery's router (settings.CELERY_TASK_ROUTES): the queue of a task by
    its purpose. A queue named when sending (a host's) wins over this."""
    if not name.startswith(f"{TASK_MODULE}."):
        return None  # Celery's own (none are sent today)
    # A retry is sent with the routing key it came with: a host's step stays on its host.
    routing_key = (options or {}).get("routing_key") or ""
    if routing_key.startswith(f"{prefix()}.host."):
        return {"queue": routing_key}
    purpose = ROUTES.get(short_name(name))
    if purpose is None:
        raise LookupError(f"the task {name} has no queue: give it a purpose in hakobune/platform/queue.py ROUTES")
    return {"queue": queue_of(purpose)}


def task_name(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"there is no task called {name!r}")
    return f"{TASK_MODULE}.{name}"


def enqueue(name: str, *args, countdown: float | None = None, host: str | None = None) -> None:
    """Sends the task now; to the queue of worker host `host` when given.
    Work that a person asked for is enqueued with `enqueue_on_commit`, so a
    worker never reads a row that is not there yet."""
    options = {"queue": host_queue(host)} if host else {}
    current_app.send_task(task_name(name), args=args, countdown=countdown, **options)


def enqueue_on_commit(name: str, *args) -> None:
    """Sends the task once the surrounding transaction commits (at once
    outside one)."""
    task_name(name)
    transaction.on_commit(lambda: enqueue(name, *args))

