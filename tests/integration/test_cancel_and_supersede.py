"""Cancel and supersede against the real worker and Docker Engine: a cancelled
build's running step container is stopped within seconds, and of two deploys
of one service the later one is the one that goes live."""

import secrets
import time

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds import pipeline
from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.locks import deploy_lock, redis_client
from hakobune.platform.services.services import cancel_build, create_service, deploy_service
from hakobune.worker.builders.confinement import BuildCgroup
from tests.conftest import archive_of

from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

S = BuildStatus


@pytest.fixture
def team(owner, team_name):
    return create_team(name=team_name, owner=owner)


def greeting_app(greeting: str) -> SimpleUploadedFile:
    """flask-hello saying `greeting`: two deploys that answer differently."""
    return SimpleUploadedFile("hello.tar.gz", archive_of("flask-hello", extra={
        "app.py": "from flask import Flask\napp = Flask(__name__)\n\n\n@app.get('/')\n"
                  f"def index():\n    return {greeting!r} + '\\n'\n\n\n@app.get('/healthz')\n"
                  "def healthz():\n    return {'ok': True}\n",
    }))


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def step_containers(team, build):
    return [cid for cgroup in BuildCgroup.of_build(settings.BUILD_CGROUP_PARENT, team.name, build.id)
            for cid in cgroup.container_ids()]


def running(docker_client, container_ids):
    return [cid for cid in container_ids
            if docker_client.api.containers(filters={"id": cid, "status": "running"})]


def log_of(build):
    return "\n".join(Build.objects.get(id=build.id).log_lines.values_list("text", flat=True))


@pytest.fixture
def confined():
    if not settings.BUILD_CGROUP_PARENT:
        pytest.skip("builds run without a cgroup here (BUILD_CGROUP_PARENT is empty): no step to find")


def test_cancel_during_a_slow_build_stops_its_container_within_seconds(owner, team, worker, docker_client, confined):
    service = create_service(team=team, name="slow", created_by=owner, build_command="sleep 300")
    build = deploy_service(service=service, source_file=greeting_app(f"never deployed {secrets.token_hex(4)}"), created_by=owner)
    containers = wait_until(lambda: running(docker_client, step_containers(team, build)), 240,
                            "the build's `sleep 300` step starting")
    assert Build.objects.get(id=build.id).status == S.BUILDING

    cancelled_at = time.monotonic()
    cancel_build(build=Build.objects.get(id=build.id), cancelled_by=owner)
    wait_until(lambda: not running(docker_client, containers), 20, "the step container stopping")
    stopped_after = time.monotonic() - cancelled_at

    build.refresh_from_db()
    assert build.status == S.CANCELLED and build.failed_step == S.BUILDING and build.failure_reason == ""
    assert f"Cancelled by {owner.username}" in log_of(build)
    wait_until(lambda: not pipeline.workspace_dir(build.id).exists(), 20, "the workspace going")
    wait_until(lambda: "Stopped here." in log_of(build), 20, "the build step ending")
    assert service.releases.count() == 0
    print(f"the step container stopped {stopped_after:.1f} s after the cancel")


def test_two_deploys_of_one_service_the_first_superseded_the_second_live(owner, team, worker, docker_client):
    # A build step of a few seconds, never cached (each run's sources differ): the
    # second deploy arrives while the first is building.
    service = create_service(team=team, name="twice", created_by=owner, build_command="sleep 5")
    run = secrets.token_hex(4)
    first = deploy_service(service=service, source_file=greeting_app(f"first deploy {run}"), created_by=owner)
    wait_until(lambda: Build.objects.get(id=first.id).status == S.BUILDING, 180, "the first deploy building")
    second = deploy_service(service=service, source_file=greeting_app(f"second deploy {run}"), created_by=owner)

    second = wait_for_build(second)
    first = wait_for_build(first)
    assert second.status == S.LIVE, second.failure_reason
    assert first.status == S.SUPERSEDED and "Superseded by deploy #2" in log_of(first)
    service.refresh_from_db()
    assert service.live_release.build_id == second.id
    assert service.releases.filter(build=first).count() == 0
    answer = get_through_router(service.hostname)
    assert answer.status_code == 200 and answer.text == f"second deploy {run}\n"
    assert not redis_client().exists(deploy_lock(service.id).name)
