"""More worker hosts: a build's steps after the fetch read the source the
fetching host unpacked in its own workspace folder, so they run on that
host's own queue. Two worker processes here stand for two hosts, each with a
workspace folder of its own."""

import secrets

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.models import Service
from tests.conftest import archive_of
from tests.support.infrastructure import _stop, get_through_router, start_worker, wait_for_build, wait_until_ready

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def two_hosts(router, settings, tmp_path, django_db_blocker):
    """Host A takes the pipeline steps (so it fetches) and its own queue;
    host B takes the shared builds and housekeeping queues and its own. The
    queues have a prefix of this test's own, so the suite's workers take
    none of these tasks."""
    prefix = f"{django_settings.CELERY_TASK_DEFAULT_QUEUE}-hosts-{secrets.token_hex(3)}"
    settings.CELERY_TASK_DEFAULT_QUEUE = prefix
    hosts = {}
    for host, queues in (("host-a", ["pipeline", "host.host-a"]), ("host-b", ["builds", "housekeeping"])):
        workspace = tmp_path / host / "workspaces"
        workspace.mkdir(parents=True)
        log = tmp_path / host / "worker.log"
        env = {"CELERY_QUEUE": prefix, "WORKER_HOST": host, "WORKSPACE_DIR": str(workspace)}
        hosts[host] = {"log": log, "workspace": workspace,
                       "process": start_worker(log, queues, concurrency=1, env=env, wait=False)}
    try:
        for host in hosts.values():
            wait_until_ready(host["process"], host["log"])
        yield hosts
    finally:
        for host in hosts.values():
            _stop(host["process"], host["log"], "SHOW_WORKER_LOG")


def test_a_build_fetched_by_one_host_is_built_there_while_another_is_idle(login, owner, team_name, two_hosts):
    team = create_team(name=team_name, owner=owner)
    client = login(owner)
    upload = SimpleUploadedFile("flask-hello.tar.gz", archive_of("flask-hello"))
    response = client.post(reverse("services:new", args=[team.name]), {"name": "web", "source": upload})
    assert response.status_code == 302
    service = Service.objects.get(team=team, name="web")
    build = wait_for_build(service.builds.get(), timeout=300)
    log = "\n".join(build.log_lines.values_list("text", flat=True))
    assert build.status == "live", log
    assert build.worker_host == "host-a"

    a, b = (two_hosts[host]["log"].read_text() for host in ("host-a", "host-b"))
    for step in ("fetch_source", "detect_stack", "build_image", "deploy_release"):
        assert f"hakobune.worker.tasks.{step}[" in a, step
        assert f"hakobune.worker.tasks.{step}[" not in b, step
    # Host B's own queue was added because it takes builds; it stayed idle.
    assert f"{django_settings.CELERY_TASK_DEFAULT_QUEUE}.host.host-b" in b
    # The source was unpacked in host A's workspace, never in B's.
    assert not any(two_hosts["host-b"]["workspace"].iterdir())
    assert get_through_router(service.hostname).status_code == 200
