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
    ("start_release", "pipeline"), ("destroy_service", "pipeline"), ("destroy_team", "pipeline"),
    ("build_image", "builds"), ("rebuild_stack", "builds"),
    ("collect_metrics", "housekeeping"), ("roll_up_metrics", "housekeeping"), ("reconcile", "housekeeping"),
    ("sync_router", "housekeeping"), ("scale_idle_to_zero", "housekeeping"), ("prune_images", "housekeeping"),
    ("sweep_pipeline", "pipeline"),
    ("admit_builds", "pipeline"),
    ("stop_build", "pipeline"),
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


def test_a_retried_step_of_a_host_stays_on_its_host():
    # Celery sends a retry with the delivery information it was received with.
    host = queue.host_queue("host-a")
    route = app.amqp.router.route({"exchange": host, "routing_key": host}, f"{queue.TASK_MODULE}.build_image", (), {})
    assert route["queue"].name == host and route["routing_key"] == host
    shared = queue.queue_of("builds")
    route = app.amqp.router.route({"exchange": shared, "routing_key": shared}, f"{queue.TASK_MODULE}.build_image", (),
                                  {})
    assert route["queue"].name == shared


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


class FakeQueues(dict):
    def __init__(self, names):
        super().__init__()
        self.consume_from = {name: type("Q", (), {"name": name})() for name in names}
        self.added = []

    def select_add(self, name):
        self.added.append(name)


def fake_worker(names):
    queues = FakeQueues(names)
    amqp = type("Amqp", (), {"queues": queues})()
    return type("Worker", (), {"app": type("App", (), {"amqp": amqp})()})(), queues


def test_a_worker_that_builds_also_takes_its_hosts_queue(settings):
    from hakobune.platform.celery import take_this_hosts_steps

    settings.WORKER_HOST = "builder.one"
    builds, queues = fake_worker([queue.queue_of("builds")])
    take_this_hosts_steps(sender="w", instance=builds)
    assert queues.added == [f"{settings.CELERY_TASK_DEFAULT_QUEUE}.host.builder-one"]
    pipeline, queues = fake_worker([queue.queue_of("pipeline")])
    take_this_hosts_steps(sender="w", instance=pipeline)
    assert queues.added == []


def test_one_reconcile_after_a_start_not_one_per_worker(settings, monkeypatch):
    import secrets

    from hakobune.platform.celery import reconcile_when_ready
    from hakobune.platform.locks import redis_client

    settings.CELERY_TASK_DEFAULT_QUEUE = f"hakobune-unit-{secrets.token_hex(4)}"
    sent = []
    monkeypatch.setattr(queue, "enqueue", lambda name, *args, **kwargs: sent.append(name))
    try:
        for names in (["pipeline"], ["builds"], ["housekeeping"], ["housekeeping"], ["pipeline", "housekeeping"]):
            worker, _ = fake_worker([queue.queue_of(name) for name in names])
            reconcile_when_ready(sender=worker)
        assert [name for name in sent if name != "sweep_pipeline"] == ["sync_router", "reconcile"]
        # Every worker's start looks for steps whose worker died (now and once their lease ran out).
        assert sent.count("sweep_pipeline") == 2 * 5
    finally:
        redis_client().delete(f"hakobune:{settings.CELERY_TASK_DEFAULT_QUEUE}:reconcile-at-start")
