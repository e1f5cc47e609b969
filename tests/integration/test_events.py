"""Crashes and OOM kills on the real Docker Engine, as the service's timeline
tells them: an app that exits with code 3, and one that runs out of memory,
each recorded once, with its exit code, by the log collector as `make run`
starts it (it reads the engine's events); the engine starts the instance
again each time, and the timeline says so once, not once a second."""

import time

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile

from hakobune.platform.accounts.services import create_team
from hakobune.platform.observability.events import sentence_of
from hakobune.platform.observability.models import Event
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.runtime.docker_local import LABEL_SERVICE, LABEL_TEAM
from tests.conftest import archive_of
from tests.support.infrastructure import wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases=["default", "logs"])]

# PID 1 of its container (the runtime execs the Procfile's command), so that
# its exit is the instance's.
FRAGILE = """import os
from http.server import BaseHTTPRequestHandler, HTTPServer

HOG = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/exit"):
            os._exit(int(self.path.partition("code=")[2] or 3))
        if self.path.startswith("/hog"):
            while True:
                HOG.append(b"\\x01" * (16 << 20))  # written, so every page is really used
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"fragile ok\\n")


HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def team(owner, team_name):
    return create_team(name=team_name, owner=owner)


def instance_url(docker_client, service):
    """The running instance, at its port published on 127.0.0.1 (a new one
    after each start), or None while it is not running."""
    running = docker_client.containers.list(filters={
        "label": [f"{LABEL_TEAM}={service.team.name}", f"{LABEL_SERVICE}={service.name}"], "status": "running"})
    bindings = running[0].ports.get(f"{service.port}/tcp") if running else None
    return f"http://127.0.0.1:{bindings[0]['HostPort']}" if bindings else None


def break_instance(docker_client, service, path, timeout=60):
    """Once the instance answers, asks it what makes it die."""
    session = requests.Session()
    session.trust_env = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = instance_url(docker_client, service)
        try:
            if url and session.get(f"{url}/", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    else:
        raise AssertionError(f"the instance did not answer within {timeout} s")
    with pytest.raises(requests.RequestException):
        session.get(f"{url}{path}", timeout=60)


def recorded(service, kind, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(Event.objects.filter(service=service, kind=kind))
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {kind} event within {timeout} s; the timeline: "
                         f"{list(Event.objects.filter(service=service).values_list('kind', flat=True))}")


def test_a_crash_and_an_oom_kill_are_each_recorded_once_with_their_exit_code(
    owner, team, worker, log_collector, docker_client,
):
    service = create_service(team=team, name="fragile", created_by=owner)
    upload = SimpleUploadedFile("fragile.tar.gz", archive_of("flask-hello", extra={
        "fragile.py": FRAGILE, "Procfile": "web: python fragile.py\n"}))
    build = wait_for_build(deploy_service(service=service, source_file=upload, created_by=owner), timeout=600)
    assert build.status == "live", "\n".join(build.log_lines.values_list("text", flat=True))
    service.refresh_from_db()

    break_instance(docker_client, service, "/exit?code=3")
    [crash] = recorded(service, "instance.crashed")
    assert crash.params["code"] == 3 and crash.actor_label == "Hakobune"
    assert sentence_of(crash).startswith("The web process exited with code 3 (instance hakobune-")

    break_instance(docker_client, service, "/hog")
    [oom] = recorded(service, "instance.oom_killed")
    assert oom.params["code"] == 137 and oom.params["memory_mb"] == service.memory_mb
    assert f"ran out of its {service.memory_mb} MiB of memory" in sentence_of(oom)

    # Once each: the engine started the instance again, and nothing more is said.
    time.sleep(5)
    assert [(e.kind, e.params["times"]) for e in Event.objects.filter(service=service, kind__startswith="instance.")
            .order_by("id")] == [("instance.crashed", 1), ("instance.oom_killed", 1)]
