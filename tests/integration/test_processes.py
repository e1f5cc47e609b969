"""Process types and the release phase on the real Docker Engine, as a team
lives with them: a Procfile's worker runs beside web from the same release
and environment, is not routed, is scaled from the portal and the API within
the team's quota, comes back when its container goes, and its crash loop is
reported like a web one; a release command runs once per new release, its
failure leaves the old release serving, and a rollback never runs it."""

import json
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from hakobune.platform.accounts.services import create_team
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.services import releases as release_actions
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.services import create_service, deploy_service, set_env
from hakobune.runtime.base import ServiceRef
from hakobune.runtime.docker_local import LABEL_ONEOFF, LABEL_PROCESS, LABEL_SERVICE, LABEL_TEAM
from hakobune.worker import tasks
from tests.conftest import APPS_DIR, archive_of

from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FLASK_APP = (APPS_DIR / "flask-hello" / "app.py").read_text()
WEB = "web: flask --app app run --host 0.0.0.0 --port $PORT\n"
WORKER = """import os, sys, time
print(f"worker ready: {os.environ.get('SHARED', 'no SHARED')}", flush=True)
while True:
    print("worker tick", flush=True)
    time.sleep(2)
"""
CRASHER = """import sys, time
time.sleep(2)
print("crashing: no queue to work on", flush=True)
sys.exit(4)
"""
RELEASE = """import os, sys
print("release phase: migrating", flush=True)
if os.environ.get("RELEASE_FAILS"):
    print("django.db.utils.OperationalError: table shop_order already exists", flush=True)
    sys.exit(5)
print("release phase: done", flush=True)
"""


@pytest.fixture
def team(owner, team_name):
    return create_team(name=team_name, owner=owner)


def deploy(service, owner, files, greeting="Hello from Hakobune"):
    extra = {"app.py": FLASK_APP.replace("Hello from Hakobune", greeting), **files}
    upload = SimpleUploadedFile("app.tar.gz", archive_of("flask-hello", extra=extra))
    return wait_for_build(deploy_service(service=service, source_file=upload, created_by=owner))


def instances(docker_client, team, service="app", *, one_offs=False):
    """{process: [container]} of the service's instances, running or not."""
    found = {}
    for container in docker_client.containers.list(
        all=True, filters={"label": [f"{LABEL_TEAM}={team.name}", f"{LABEL_SERVICE}={service}"]}
    ):
        if (LABEL_ONEOFF in container.labels) != one_offs:
            continue
        found.setdefault(container.labels.get(LABEL_PROCESS, "web"), []).append(container)
    return found


def counts(docker_client, team, service="app"):
    """{process: count} of the live release's instances, once those of the releases it replaced are gone."""
    live = Service.objects.get(team=team, name=service).live_release_id
    deadline = time.monotonic() + 60
    while True:
        found = instances(docker_client, team, service)
        releases = {c.labels["org.hakobune.release"] for cs in found.values() for c in cs}
        if releases <= {str(live)} or time.monotonic() > deadline:
            return {name: len(cs) for name, cs in found.items()}
        time.sleep(0.25)


def wait_live(service, number, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        release = service.releases.filter(number=number).first()
        if release and release.status in ("live", "failed"):
            return release
        time.sleep(0.25)
    raise AssertionError(f"v{number} of {service.name} did not start in {timeout} s")


def runtime_log(service, expected, timeout=30):
    ref = ServiceRef(service.team.name, service.name)
    deadline = time.monotonic() + timeout
    while True:
        lines = backend_for(service).logs(ref)
        if any(expected in line.text for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def test_a_worker_runs_beside_web_unrouted_and_is_scaled_within_the_quota_and_reconciled(
    login, owner, team, worker, docker_client
):
    service = create_service(team=team, name="app", created_by=owner)
    set_env(service=service, values={"SHARED": "one environment"}, unset=[])
    build = deploy(service, owner, {"Procfile": WEB + "worker: python worker.py\n", "worker.py": WORKER})
    assert build.status == "live", build.failure_reason
    service.refresh_from_db()
    assert service.processes == {"worker": {"instances": 1}} and service.serves_web

    # Web gets the requests; the worker runs the same release with the same environment, with no port.
    assert get_through_router(service.hostname).text.startswith("Hello from Hakobune")
    running = instances(docker_client, team)
    assert {name: len(found) for name, found in running.items()} == {"web": 1, "worker": 1}
    worker_container = running["worker"][0]
    assert worker_container.labels["org.hakobune.release"] == str(service.live_release_id)
    assert worker_container.image.id == running["web"][0].image.id
    # Nothing published on the host (the image's EXPOSE shows, bound to nothing).
    assert not any((worker_container.attrs["NetworkSettings"]["Ports"] or {}).values())
    lines = runtime_log(service, "worker ready")
    assert any(line.process == "worker" and line.text == "worker ready: one environment" for line in lines)
    assert all(line.process == "web" for line in lines if "worker" not in line.instance)

    # The portal's process table scales it; the new release keeps web as it was.
    client = login(owner)
    page = client.get(reverse("services:detail", args=[team.name, "app"])).content.decode()
    assert 'name="count_worker"' in page and "python worker.py" in page
    response = client.post(reverse("services:processes", args=[team.name, "app"]), {"count_web": "1", "count_worker": "2"})
    assert response.status_code == 302
    assert wait_live(service, 2).status == "live"
    assert counts(docker_client, team) == {"web": 1, "worker": 2}
    assert get_through_router(service.hostname).status_code == 200

    # The API: what runs, and a scale past the team's quota is refused in words.
    answer = client.get(f"/api/v1/teams/{team.name}/services/app/processes/").json()
    assert [(p["name"], p["instances"], p["routed"]) for p in answer["processes"]] == [
        ("web", 1, True), ("worker", 2, False)
    ]
    TeamPolicy.objects.update_or_create(team=team, defaults={"max_cpu": 1.5, "max_memory_mb": 4096})
    refused = client.patch(f"/api/v1/teams/{team.name}/services/app/processes/", json.dumps({"worker": 3}),
                           content_type="application/json")
    assert refused.status_code == 400 and "1.5 CPU cores" in refused.content.decode()
    assert service.releases.count() == 2

    # A worker container that goes away is brought back by the reconciler.
    web_before = instances(docker_client, team)["web"][0].id
    instances(docker_client, team)["worker"][0].remove(force=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks.reconcile()
        now = instances(docker_client, team)
        if len(now.get("worker", [])) == 2 and all(c.status == "running" for c in now["worker"]):
            break
        time.sleep(0.5)
    now = instances(docker_client, team)
    assert len(now["worker"]) == 2 and all(c.status == "running" for c in now["worker"])
    assert now["web"][0].id == web_before  # web was left alone
    service.refresh_from_db()
    assert {c.labels["org.hakobune.release"] for found in now.values() for c in found} == {str(service.live_release_id)}

    # Scaled to 0 through the API, the worker stops and web serves on.
    answer = client.patch(f"/api/v1/teams/{team.name}/services/app/processes/", json.dumps({"worker": 0}),
                          content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert wait_live(service, answer.json()["release"]).status == "live"
    assert counts(docker_client, team) == {"web": 1}
    assert get_through_router(service.hostname).text.startswith("Hello from Hakobune")


def test_a_worker_crash_loop_is_reported_like_a_web_one(owner, team, worker, docker_client):
    service = create_service(team=team, name="app", created_by=owner)
    build = deploy(service, owner, {"Procfile": WEB + "worker: python crash.py\n", "crash.py": CRASHER})
    assert build.status == "live", build.failure_reason
    ref = ServiceRef(team.name, "app")
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        status = backend_for(service).status(ref)
        if status.state == "crashed":
            break
        time.sleep(1)
    assert status.state == "crashed", status
    assert "crash loop: its worker process exits with code 4" in status.detail
    assert any("crashing: no queue" in line.text and line.process == "worker" for line in runtime_log(service, "crashing"))


def test_a_worker_that_exits_at_once_fails_the_deploy_with_its_own_output(owner, team, worker, docker_client):
    service = create_service(team=team, name="app", created_by=owner)
    assert deploy(service, owner, {"Procfile": WEB}, "Version one").status == "live"
    broken = deploy(service, owner, {"Procfile": WEB + "worker: python -c 'import nosuchmodule'\n"}, "Version two")
    assert broken.status == "failed"
    assert "The worker process stopped because the app imports nosuchmodule" in broken.failure_reason
    assert "ModuleNotFoundError" in broken.failure_reason
    assert get_through_router(service.hostname).text.startswith("Version one")
    assert counts(docker_client, team) == {"web": 1}


def test_a_service_of_workers_only_is_live_and_not_routed(owner, team, worker, docker_client):
    service = create_service(team=team, name="app", created_by=owner)
    build = deploy(service, owner, {"Procfile": "worker: python worker.py\n", "worker.py": WORKER})
    assert build.status == "live", build.failure_reason
    service.refresh_from_db()
    assert not service.serves_web
    assert counts(docker_client, team) == {"worker": 1}
    assert get_through_router(service.hostname).status_code != 200
    assert any(line.text.startswith("worker ready") for line in runtime_log(service, "worker ready"))
    # The reconciler finds it as desired: nothing is restarted.
    before = instances(docker_client, team)["worker"][0].id
    tasks.reconcile()
    assert [c.id for c in instances(docker_client, team)["worker"]] == [before]


def test_the_release_phase_runs_once_per_new_release_and_its_failure_keeps_the_old_release(
    login, owner, team, worker, docker_client
):
    files = {"Procfile": WEB + "release: python release.py\n", "release.py": RELEASE}
    service = create_service(team=team, name="app", created_by=owner)
    first = deploy(service, owner, files, "Version one")
    assert first.status == "live", first.failure_reason
    log = "\n".join(first.log_lines.values_list("text", flat=True))
    assert "Release phase: `python release.py`" in log
    assert "release phase: migrating" in log and "release phase: done" in log
    assert log.index("Release phase done") < log.index("Starting v1")
    v1 = service.releases.get(number=1)

    # From here the release command fails. A change of environment (a new
    # release of the same build) and a rollback do not run it: they go live.
    service.refresh_from_db()
    set_env(service=service, values={"RELEASE_FAILS": "1"}, unset=[])
    assert wait_live(service, 2).status == "live"
    second = deploy(service, owner, files, "Version two")
    assert second.status == "failed"
    assert "The release command (`python release.py`) failed with exit code 5" in second.failure_reason
    assert "table shop_order already exists" in second.failure_reason
    failed = service.releases.get(build=second)
    assert failed.status == "failed" and "table shop_order already exists" in failed.failure_reason
    # No instance of it started; the old release serves; its one-off container is gone. (The
    # release the environment change replaced drains after that change went live: wait for it.)
    serving = str(service.releases.get(number=2).id)
    deadline = time.monotonic() + 60
    while (running := {c.labels["org.hakobune.release"] for found in instances(docker_client, team).values()
                       for c in found}) != {serving} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert running == {serving}
    assert instances(docker_client, team, one_offs=True) == {}
    assert get_through_router(service.hostname).text.startswith("Version one")

    client = login(owner)
    assert client.post(reverse("services:rollback", args=[team.name, "app", 1])).status_code == 302
    rolled = wait_live(service, failed.number + 1)
    assert rolled.status == "live", rolled.failure_reason
    assert rolled.image == v1.image
    assert get_through_router(service.hostname).text.startswith("Version one")


def test_a_release_command_that_runs_too_long_is_stopped_and_fails_the_release(owner, team, worker, docker_client,
                                                                                settings):
    files = {"Procfile": WEB + "release: python -c 'import time; print(\"waiting\", flush=True); time.sleep(120)'\n"}
    service = create_service(team=team, name="app", created_by=owner)
    # The build's deploy fails at the release phase's own limit (RELEASE_COMMAND_TIMEOUT, 300 s in the
    # worker); here the phase is run again in this process with a limit of 3 s.
    build = deploy(service, owner, {"Procfile": WEB})
    assert build.status == "live"
    service.refresh_from_db()
    build.plan = {**build.plan, "release_command": files["Procfile"].split("release: ", 1)[1].strip()}
    build.save(update_fields=["plan"])
    release = Release.objects.create(service=service, build=build, number=2, image=build.image,
                                     config=service.live_release.config, status=Release.Status.DEPLOYING)
    settings.RELEASE_COMMAND_TIMEOUT = 3
    lines = []
    started = time.monotonic()
    with pytest.raises(release_actions.ReleaseRefused) as excinfo:
        release_actions.run_release_phase(release, lines.append)
    assert time.monotonic() - started < 30
    assert excinfo.value.rule == "release.command_timeout"
    assert "  waiting" in lines
    release.refresh_from_db()
    assert release.status == "failed" and "ran longer than 3 s" in release.failure_reason
    assert instances(docker_client, team, one_offs=True) == {}
    assert get_through_router(service.hostname).status_code == 200
