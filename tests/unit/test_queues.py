"""Queues by purpose: every task has one, the queues carry the platform's
prefix (a test run's own), the scheduler's entries name theirs, and the
steps after a fetch go to the fetching host's queue."""

import pytest
from django.conf import settings

from hakobune.platform import queue
from hakobune.platform.celery import app
from hakobune.worker import tasks

ALL_TASKS = sorted(
    name for name, value in vars(tasks).items() if hasattr(value, "delay") and getattr(value, "name", "").startswith(
        queue.TASK_MODULE)
)


def test_every_task_has_a_purpose_and_no_purpose_names_a_missing_task():
    assert ALL_TASKS, "no tasks found"
    unrouted = [name for name in ALL_TASKS if name not in queue.ROUTES]
    assert not unrouted, f"give these tasks a purpose in hakobune/platform/queue.py ROUTES: {unrouted}"
    assert set(queue.ROUTES) == set(ALL_TASKS)
    assert set(queue.ROUTES.values()) == set(queue.PURPOSES)


@pytest.mark.parametrize("name, purpose", [
    ("fetch_source", "pipeline"), ("detect_stack", "pipeline"), ("deploy_release", "pipeline"),
    ("start_release", "pipeline"), ("destroy_service", "pipeline"),
    ("build_image", "builds"), ("rebuild_stack", "builds"),
    ("collect_metrics", "housekeeping"), ("roll_up_metrics", "housekeeping"), ("reconcile", "housekeeping"),
    ("sync_router", "housekeeping"), ("scale_idle_to_zero", "housekeeping"), ("prune_images", "housekeeping"),
    ("fail_stalled_builds", "housekeeping"),
])
def test_celery_routes_each_task_to_the_queue_of_its_purpose(name, purpose):
    route = app.amqp.router.route({}, f"{queue.TASK_MODULE}.{name}", (), {})
    assert route["queue"].name == f"{settings.CELERY_TASK_DEFAULT_QUEUE}.{purpose}"


def test_a_task_without_a_purpose_is_refused_when_sent():
    with pytest.raises(LookupError, match="has no queue"):
        queue.route(f"{queue.TASK_MODULE}.something_new")


def test_the_queues_follow_the_prefix_so_runs_side_by_side_share_none(settings):
    settings.CELERY_TASK_DEFAULT_QUEUE = "hakobune-test-abc"
    assert queue.route(f"{queue.TASK_MODULE}.build_image") == {"queue": "hakobune-test-abc.builds"}
    assert queue.host_queue("builder one.example") == "hakobune-test-abc.host.builder-one-example"


def test_a_queue_named_when_sending_wins_over_the_purpose():
    host = queue.host_queue("host-a")
    route = app.amqp.router.route({"queue": host}, f"{queue.TASK_MODULE}.build_image", (), {})
    assert route["queue"].name == host


def test_enqueue_sends_to_the_hosts_queue_when_told(monkeypatch):
    sent = []
    monkeypatch.setattr(queue.current_app, "send_task", lambda name, **options: sent.append((name, options)))
    queue.enqueue("build_image", 7, host="host-a")
    queue.enqueue("deploy_release", 7)
    assert sent[0][1]["queue"] == f"{settings.CELERY_TASK_DEFAULT_QUEUE}.host.host-a"
    assert "queue" not in sent[1][1]


def test_every_scheduled_task_carries_its_queue():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        name = queue.short_name(entry["task"])
        assert entry["options"]["queue"] == queue.queue_of(queue.ROUTES[name]), entry["task"]
