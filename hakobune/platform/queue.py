"""The one place the platform hands work to the workers. Tasks are sent by
name, so the platform never imports the task modules (they sit above it and
call its actions); `TASKS` lists every name the platform may send, and
`tests/unit/test_layers.py` checks that each one exists in
`hakobune.worker.tasks`."""

from __future__ import annotations

from celery import current_app
from django.db import transaction

TASK_MODULE = "hakobune.worker.tasks"

TASKS = frozenset({
    "fetch_source", "detect_stack", "build_image", "deploy_release", "start_release",
    "destroy_service", "sync_router", "reconcile", "rebuild_stack", "sweep_pipeline",
})


def task_name(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"there is no task called {name!r}")
    return f"{TASK_MODULE}.{name}"


def enqueue(name: str, *args, countdown: float | None = None) -> None:
    """Sends the task now. Work that a person asked for is enqueued with
    `enqueue_on_commit`, so a worker never reads a row that is not there yet."""
    current_app.send_task(task_name(name), args=args, countdown=countdown)


def enqueue_on_commit(name: str, *args) -> None:
    """Sends the task once the surrounding transaction commits (at once
    outside one)."""
    task_name(name)
    transaction.on_commit(lambda: enqueue(name, *args))
