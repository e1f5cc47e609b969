"""A Django app with its database, the way a team brings one
(tests/fixtures/apps/django-celery): PostgreSQL and Redis add-ons, a Procfile
with `web` (gunicorn), `worker` (Celery on Redis) and `release: python
manage.py migrate`, and a scheduled job in hakobune.toml. The owner makes the
team, its add-ons and the service through the API, attaches the add-ons and
deploys: the release phase migrates, the web process writes rows and queues
tasks, the worker processes them, the job records its run, and every row is
still there after a redeploy, a rollback, a restart of the add-ons, their
containers killed, and (with HAKOBUNE_TEST_RESTART_DOCKERD=1 only: other
users of the engine are hit too) a restart of the Docker Engine.

Traffic goes only to the service through the tests' router."""

import json
import time
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from hakobune.platform.addons.models import AddOn
from hakobune.platform.builds.models import Build
from hakobune.platform.crypto import decrypt
from hakobune.platform.services import housekeeping, jobs
from hakobune.platform.services.backends import get_backend
from hakobune.platform.services.models import JobRun, Release, Service
from hakobune.runtime.addons import LocalAddOns, container_name
from tests.conftest import upload_of
from tests.support.host import may_restart_dockerd, restart_dockerd
from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout} s")
        time.sleep(0.5)


class Notes:
    """The app, through the router, as its users reach it."""

    def __init__(self, hostname):
        self.hostname = hostname
        self.session = requests.Session()
        self.session.trust_env = False

    def _url(self, path):
        return f"http://127.0.0.1:{settings.ROUTER_PORT}{path}"

    @property
    def _host(self):
        return {"Host": f"{self.hostname}:{settings.ROUTER_PORT}"}

    def write(self, text) -> int:
        response = self.session.post(self._url("/notes/"), data=json.dumps({"text": text}), headers=self._host,
                                     timeout=30)
        assert response.status_code == 201, response.text[:2000]
        return response.json()["id"]

    def read(self, path):
        response = get_through_router(self.hostname, path, timeout=30)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:2000]}"
        return response.json()

    def answers_again(self, timeout=120):
        """Once the app answers from its database again (after the add-on came back)."""
        def answers():
            try:
                return get_through_router(self.hostname, "/", timeout=30).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, timeout, f"{self.hostname} does not answer from its database")

    def processed(self, note_id, timeout=120):
        """The note once the Celery worker has processed it."""
        return wait_for(lambda: (note := self.read(f"/notes/{note_id}/"))["processed_by"] and note, timeout,
                        f"note {note_id} was not processed by the worker")

    def texts(self):
        return [note["text"] for note in self.read("/notes/")["notes"]]


def live_number(service, timeout=300):
    """The number of the service's newest release, once it is live."""
    def newest_live():
        release = Release.objects.filter(service=service).order_by("-number").first()
        assert release is None or release.status != Release.Status.FAILED, release.failure_reason
        return release is not None and release.status == Release.Status.LIVE and release.number

    return wait_for(newest_live, timeout, f"the newest release of {service.name} is not live")


def deploy(client, where, **extra):
    answer = client.post(f"{where}/deploys/", {"source": upload_of("django-celery", **extra)})
    assert answer.status_code == 202, answer.content
    build = wait_for_build(Build.objects.get(id=answer.json()["id"]), timeout=900)
    log = "\n".join(build.log_lines.values_list("text", flat=True))
    assert build.status == "live", f"{build.failure_reason}\n{log[-4000:]}"
    return build, log


def test_a_django_app_with_postgres_celery_and_redis_keeps_its_data_through_redeploys_rollbacks_and_restarts(
    login, owner, team_name, worker, docker_client
):
    client = login(owner)
    assert client.post("/api/v1/teams/", {"name": team_name}, content_type="application/json").status_code == 201
    team_api = f"/api/v1/teams/{team_name}"
    for kind, name in (("postgres", "db"), ("redis", "cache")):
        made = client.post(f"{team_api}/addons/", {"kind": kind, "name": name}, content_type="application/json")
        assert made.status_code == 201, made.content
    made = client.post(f"{team_api}/services/", {"name": "notes"}, content_type="application/json")
    assert made.status_code == 201, made.content
    where = f"{team_api}/services/notes"
    for name in ("db", "cache"):
        attached = client.post(f"{where}/addons/", {"addon": name}, content_type="application/json")
        assert attached.status_code == 200, attached.content
        assert attached.json()["release"] is None  # nothing is live yet: the first deploy gets the URLs
    addons = {addon.name: addon for addon in AddOn.objects.filter(team__name=team_name)}
    for addon in addons.values():
        wait_for(lambda: AddOn.objects.get(id=addon.id).status != AddOn.Status.PROVISIONING, 900,
                 f"{addon.name} is still starting")
        addon.refresh_from_db()
        assert addon.status == AddOn.Status.READY, addon.status_detail

    # The first deploy: the release phase migrates the add-on's database before web and worker start.
    build, log = deploy(client, where)
    assert "python manage.py migrate --noinput" in log
    assert "Applying board.0001_initial... OK" in log
    service = Service.objects.get(team__name=team_name, name="notes")
    assert service.processes == {"worker": {"instances": 1}} and service.serves_web
    notes = Notes(service.hostname)

    # A request writes a row and queues a task; the worker writes its own row for it.
    first = notes.write("the first note, from the web")
    done = notes.processed(first)
    assert done["words"] == 6 and done["processed_by"] == "notes-worker"  # the worker process's container

    # The scheduled job runs in a container of the live release and writes its row.
    minute = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    (run,) = jobs.start_due(minute + timedelta(seconds=1))
    assert run.job == "tick"

    def ended():
        jobs.finish(minute + timedelta(seconds=2))
        run.refresh_from_db()
        return run.status != JobRun.Status.RUNNING

    wait_for(ended, 120, "the scheduled job did not end")
    assert run.status == JobRun.Status.SUCCEEDED and run.exit_code == 0, run.log
    assert "tick 1 recorded" in run.log
    assert notes.read("/ticks/") == {"ticks": 1}

    # A redeploy (v2) migrates again (nothing to apply) and finds every row.
    build, log = deploy(client, where, extra={"VERSION": "2\n"})
    assert "No migrations to apply." in log
    assert live_number(service) == 2
    assert notes.texts() == ["the first note, from the web"]
    notes.processed(notes.write("the second note, after a redeploy"))

    # A rollback to v1 (v3): no release phase, the same database.
    back = client.post(f"{where}/rollback/", {"release": 1}, content_type="application/json")
    assert back.status_code == 202, back.content
    assert live_number(service) == 3
    assert notes.texts() == ["the first note, from the web", "the second note, after a redeploy"]
    assert Build.objects.filter(service=service).count() == 2

    # The add-ons restart (their containers stop and start again): the rows and the queue are still there.
    runtime = LocalAddOns(get_backend("local"))
    for addon in addons.values():
        runtime.restart(team_name, addon.name, addon.kind, decrypt(addon.password_encrypted))
    notes.answers_again()
    notes.processed(notes.write("the third note, after the add-ons restarted"))

    # Killed, which the engine's restart policy leaves alone: one pass of the reconciler brings them back.
    for name in ("db", "cache"):
        container = docker_client.containers.get(container_name(team_name, name))
        container.kill()
        container.wait(timeout=30)
    housekeeping.reconcile()
    assert {docker_client.containers.get(container_name(team_name, name)).status for name in ("db", "cache")} == {
        "running"}
    notes.answers_again()
    notes.processed(notes.write("the fourth note, after the add-ons were killed"))
    assert len(notes.texts()) == 4

    if may_restart_dockerd():
        restart_dockerd()

        def serves_again():
            housekeeping.reconcile()
            try:
                return get_through_router(service.hostname, "/", timeout=10).status_code == 200
            except requests.RequestException:
                return False

        wait_for(serves_again, 180, "the app does not serve again after the Docker Engine restarted")
        notes.processed(notes.write("the fifth note, after the Docker Engine restarted"))
        assert len(notes.texts()) == 5
    assert notes.read("/ticks/") == {"ticks": 1}
