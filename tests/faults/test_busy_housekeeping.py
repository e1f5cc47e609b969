"""The housekeeping workers held busy (a 60 s task in their only slot, more
housekeeping waiting behind it) while a redeploy of a live service still
goes through: the pipeline and the builds have workers of their own."""

import secrets
import time

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from hakobune.platform.accounts.services import create_team
from hakobune.platform.celery import app
from hakobune.platform.locks import redis_client
from hakobune.platform.services.models import Service
from tests.conftest import APPS_DIR, archive_of
from tests.support.infrastructure import (
    WORKER_PURPOSES, _stop, get_through_router, start_worker, wait_for_build, wait_until_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HOLD_SECONDS = 60
FLASK_APP = (APPS_DIR / "flask-hello" / "app.py").read_text()


@pytest.fixture
def workers(router, settings, tmp_path, django_db_blocker):
    """The workers as `make run` starts them, on queues of this test's own
    (so the suite's workers take none of its tasks); the housekeeping one
    can run the fault tests' `hold` task."""
    prefix = f"{django_settings.CELERY_TASK_DEFAULT_QUEUE}-busy-{secrets.token_hex(3)}"
    settings.CELERY_TASK_DEFAULT_QUEUE = prefix
    processes = {}
    try:
        for purpose, concurrency in WORKER_PURPOSES:
            processes[purpose] = start_worker(
                tmp_path / f"worker-{purpose}.log", [purpose], concurrency=concurrency, wait=False,
                env={"CELERY_QUEUE": prefix}, include="tests.faults.busy" if purpose == "housekeeping" else None,
            )
        for purpose, process in processes.items():
            wait_until_ready(process, tmp_path / f"worker-{purpose}.log")
        yield prefix
    finally:
        for purpose, process in processes.items():
            _stop(process, tmp_path / f"worker-{purpose}.log", "SHOW_WORKER_LOG")
        redis_client().delete(f"{prefix}.housekeeping")  # what the held worker never took


def deploy(client, team, name, greeting, new=False):
    archive = archive_of("flask-hello", extra={"app.py": FLASK_APP.replace("Hello from Hakobune", greeting)})
    upload = SimpleUploadedFile("flask-hello.tar.gz", archive)
    if new:
        response = client.post(reverse("services:new", args=[team.name]), {"name": name, "source": upload})
    else:
        response = client.post(reverse("services:deploy", args=[team.name, name]), {"source": upload})
    assert response.status_code == 302
    return Service.objects.get(team=team, name=name).builds.order_by("-number").first()


def test_a_redeploy_finishes_while_the_housekeeping_worker_is_held_busy(login, owner, team_name, workers, tmp_path):
    team = create_team(name=team_name, owner=owner)
    client = login(owner)
    first = wait_for_build(deploy(client, team, "web", "Version one", new=True), timeout=300)
    assert first.status == "live", "\n".join(first.log_lines.values_list("text", flat=True))
    service = Service.objects.get(team=team, name="web")

    started, done, release = (tmp_path / f"hold.{name}" for name in ("started", "done", "release"))
    # Two of them: the second waits in the queue, and would take a second
    # slot of a worker that ran every purpose at once.
    for _ in range(2):
        app.send_task("tests.faults.busy.hold", args=[HOLD_SECONDS, str(started), str(done), str(release)],
                      queue=f"{workers}.housekeeping")
    # The worker's first task after its start is a reconcile of the host
    # (hakobune/platform/celery.py), which may take a while on a busy host.
    deadline = time.monotonic() + 120
    while not started.exists():
        assert time.monotonic() < deadline, "the housekeeping worker never took the hold task"
        time.sleep(0.1)
    held_at = time.monotonic()
    # More housekeeping waits behind it, as the scheduler would send it.
    for name in ("collect_metrics", "reconcile", "collect_metrics", "prune_images"):
        app.send_task(f"hakobune.worker.tasks.{name}")

    try:
        second = wait_for_build(deploy(client, team, "web", "Version two"), timeout=HOLD_SECONDS)
        took = time.monotonic() - held_at
        assert second.status == "live", "\n".join(second.log_lines.values_list("text", flat=True))
        assert not done.exists(), f"the redeploy took {took:.0f} s: it waited for the housekeeping worker"
    finally:
        release.touch()  # the held worker ends its task and can stop
    assert get_through_router(service.hostname).text.startswith("Version two")
    print(f"redeploy while housekeeping was held: {took:.1f} s")
