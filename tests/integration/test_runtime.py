"""The local runtime as its users live with it: redeploys that drop no
request, a broken release that never replaces a working one, rollbacks
without rebuilds, and a reconciler that brings services back after their
containers or the Docker Engine went away."""

import os
import threading
import time

import docker
import pytest
import requests
from django.conf import settings
from django.urls import reverse

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services import housekeeping
from hakobune.platform.services.models import DesiredState, Release, Service
from hakobune.runtime.docker_local import LABEL_SERVICE, LABEL_TEAM
from hakobune.runtime.router import WAKE_PREFIX
from hakobune.worker import tasks
from tests.conftest import APPS_DIR, archive_of
from tests.support.dns_stub import DnsStub
from tests.support.host import restart_dockerd

from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FLASK_APP = (APPS_DIR / "flask-hello" / "app.py").read_text()


def version_of(greeting):
    return {"app.py": FLASK_APP.replace("Hello from Hakobune", greeting)}


@pytest.fixture
def team(owner, team_name):
    return create_team(name=team_name, owner=owner)


def deploy(client, team, name, greeting=None, app="flask-hello", new=False):
    from django.core.files.uploadedfile import SimpleUploadedFile

    archive = archive_of(app, extra=version_of(greeting) if greeting else None)
    upload = SimpleUploadedFile(f"{app}.tar.gz", archive)
    if new:
        response = client.post(reverse("services:new", args=[team.name]), {"name": name, "source": upload})
    else:
        response = client.post(reverse("services:deploy", args=[team.name, name]), {"source": upload})
    assert response.status_code == 302
    service = Service.objects.get(team=team, name=name)
    return wait_for_build(service.builds.order_by("-number").first())


class RequestLoop:
    """GETs a service through the router, over and over, from a thread;
    bounded in count and time."""

    def __init__(self, hostname, max_requests=5000, max_seconds=240):
        self.hostname = hostname
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.results = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stopped.is_set() and len(self.results) < self.max_requests and time.monotonic() < self.deadline:
            try:
                response = get_through_router(self.hostname, timeout=10)
                self.results.append((response.status_code, response.text.split("!")[0]))
            except Exception as exc:  # a refused or reset connection is what this test looks for
                self.results.append(("error", repr(exc)))
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(timeout=30)


def test_redeploys_drop_no_request_and_a_broken_one_changes_nothing(login, owner, team, worker):
    client = login(owner)
    assert deploy(client, team, "web", "Version one", new=True).status == "live"
    service = Service.objects.get(team=team, name="web")

    with RequestLoop(service.hostname) as loop:
        time.sleep(0.5)
        assert deploy(client, team, "web", "Version two").status == "live"
        time.sleep(0.5)
        broken = deploy(client, team, "web", app="flask-broken")
        assert broken.status == "failed"
        time.sleep(0.5)

    bodies = [body for status, body in loop.results]
    assert len(loop.results) > 50
    assert {status for status, _ in loop.results} == {200}, [r for r in loop.results if r[0] != 200][:5]
    assert set(bodies) == {"Version one", "Version two"}
    # Once the new version answered, the old one never did again.
    first_new = bodies.index("Version two")
    assert "Version one" not in bodies[first_new:]
    assert get_through_router(service.hostname).text.startswith("Version two")


def test_a_rollback_serves_the_old_version_without_a_rebuild(login, owner, team, worker, docker_client):
    client = login(owner)
    deploy(client, team, "web", "Version one", new=True)
    deploy(client, team, "web", "Version two")
    service = Service.objects.get(team=team, name="web")
    v1 = service.releases.get(number=1)
    builds = service.builds.count()

    response = client.post(reverse("services:rollback", args=[team.name, "web", 1]))
    assert response.status_code == 302
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        v3 = service.releases.filter(number=3).first()
        if v3 and v3.status in ("live", "failed"):
            break
        time.sleep(0.25)
    assert v3.status == "live", v3.failure_reason
    assert v3.image == v1.image and service.builds.count() == builds
    assert get_through_router(service.hostname).text.startswith("Version one")
    # The replaced release drains once v3 is live.
    labels = [f"{LABEL_TEAM}={team.name}", f"{LABEL_SERVICE}=web"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        releases = {c.labels["org.hakobune.release"] for c in docker_client.containers.list(filters={"label": labels})}
        if releases == {str(v3.id)}:
            break
        time.sleep(0.25)
    assert releases == {str(v3.id)}


def test_the_reconciler_brings_back_killed_instances_and_removes_strays(login, owner, team, worker, docker_client):
    client = login(owner)
    deploy(client, team, "web", "Still here", new=True)
    service = Service.objects.get(team=team, name="web")
    labels = [f"{LABEL_TEAM}={team.name}", f"{LABEL_SERVICE}=web"]
    for container in docker_client.containers.list(filters={"label": labels}):
        container.remove(force=True)
    assert get_through_router(service.hostname).status_code == 502

    stray = docker_client.containers.run(
        "hakobune/stack-python:bookworm", ["sleep", "600"], detach=True,
        labels={"org.hakobune.managed": os.environ["HAKOBUNE_INSTANCE"], LABEL_TEAM: team.name, LABEL_SERVICE: "ghost"},
    )
    # The reconciler runs every half minute; here it is called until it has
    # repaired (a deploy that just ended may still hold the service's lock).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks.reconcile()
        if get_through_router(service.hostname).status_code == 200:
            break
        time.sleep(0.5)
    assert get_through_router(service.hostname).text.startswith("Still here")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(stray.id)
    # The service's timeline says that Hakobune started it again.
    [repaired] = service.events.filter(kind="service.repaired")
    assert repaired.actor_label == "Hakobune" and any("again" in action for action in repaired.params["actions"])


@pytest.mark.skipif(os.environ.get("HAKOBUNE_TEST_RESTART_DOCKERD") != "1",
                    reason="restarts the host's Docker Engine; scripts/test.sh enables it")
def test_services_answer_again_after_the_docker_engine_restarts(login, owner, team, worker):
    client = login(owner)
    deploy(client, team, "web", "Survivor", new=True)
    service = Service.objects.get(team=team, name="web")
    restart_dockerd()
    deadline = time.monotonic() + 90
    answer = None
    while time.monotonic() < deadline:
        tasks.reconcile()
        try:
            answer = get_through_router(service.hostname)
            if answer.status_code == 200:
                break
        except Exception:
            pass
        time.sleep(1)
    assert answer is not None and answer.text.startswith("Survivor")


# What the router adds toward the waker (runtime/router.py).
WAKER_HEADER = "X-Hakobune-Waker"
HEADERS_ROUTE = """

@app.get("/headers")
def headers():
    from flask import request

    return {name.lower(): value for name, value in request.headers.items()}
"""


def _through_router(hostname, path="/", headers=None, timeout=10):
    session = requests.Session()
    session.trust_env = False
    return session.get(f"http://127.0.0.1:{settings.ROUTER_PORT}{path}",
                       headers={"Host": f"{hostname}:{settings.ROUTER_PORT}", **(headers or {})}, timeout=timeout)


def _to_the_waker(portal, hostname, secret=None):
    """Straight to the portal's waker, past the router, as anyone on the host could."""
    session = requests.Session()
    session.trust_env = False
    headers = {"Host": f"{hostname}:{settings.ROUTER_PORT}"}
    if secret is not None:
        headers[WAKER_HEADER] = secret
    return session.get(f"{portal.url}{WAKE_PREFIX}/headers", headers=headers, timeout=30)


def test_an_idle_service_sleeps_and_its_next_request_wakes_it(login, owner, team, worker, portal, settings,
                                                               docker_client):
    from datetime import timedelta

    from django.utils import timezone

    settings.RUNTIME_BACKENDS = {
        alias: {**config, "OPTIONS": {**config["OPTIONS"], "waker_upstream": portal.address}}
        for alias, config in settings.RUNTIME_BACKENDS.items()
    }
    client = login(owner)
    app = FLASK_APP.replace("Hello from Hakobune", "Good morning") + HEADERS_ROUTE
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("flask-hello.tar.gz", archive_of("flask-hello", extra={"app.py": app}))
    assert client.post(reverse("services:new", args=[team.name]), {"name": "sleepy", "source": upload}).status_code == 302
    service = Service.objects.get(team=team, name="sleepy")
    assert wait_for_build(service.builds.get()).status == "live"
    client.post(reverse("services:sleep", args=[team.name, "sleepy"]), {"scale_to_zero": "on", "idle_minutes": 5})
    service = Service.objects.get(team=team, name="sleepy")
    assert service.scale_to_zero and service.idle_minutes == 5
    long_ago = timezone.now() - timedelta(minutes=6)
    Service.objects.filter(id=service.id).update(last_request_at=long_ago)
    Release.objects.filter(id=service.live_release_id).update(live_at=long_ago)

    tasks.scale_idle_to_zero()

    service.refresh_from_db()
    assert service.desired_state == DesiredState.SLEEPING
    labels = [f"{LABEL_TEAM}={team.name}", f"{LABEL_SERVICE}=sleepy"]
    assert docker_client.containers.list(filters={"label": labels}) == []
    assert "asleep" in client.get(reverse("services:dashboard")).content.decode()

    # Past the router, the waker answers no one: without the router's secret, or with a guess.
    for secret in (None, "guessed"):
        refused = _to_the_waker(portal, service.hostname, secret)
        assert refused.status_code == 403 and "answers the router only" in refused.text
    service.refresh_from_db()
    assert service.desired_state == DesiredState.SLEEPING
    assert docker_client.containers.list(filters={"label": labels}) == []

    # Through the router it wakes, and a copy of the secret header a client sends goes nowhere.
    started = time.monotonic()
    answer = _through_router(service.hostname, "/headers",
                             {WAKER_HEADER: "forged", "X_Hakobune_Waker": "forged", "X-Other": "kept"}, timeout=90)
    woke_in = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert seen["x-other"] == "kept" and seen["host"] == f"{service.hostname}:{settings.ROUTER_PORT}"
    assert not [name for name in seen if "hakobune" in name], seen
    assert settings.WAKER_SECRET not in answer.text
    service.refresh_from_db()
    assert service.desired_state == DesiredState.RUNNING
    assert len(docker_client.containers.list(filters={"label": labels})) == 1
    # Later requests go straight to the instance again, not through the waker, and the
    # route deletes the header there too.
    assert _through_router(service.hostname).text.startswith("Good morning")
    direct = _through_router(service.hostname, "/headers", {WAKER_HEADER: settings.WAKER_SECRET})
    assert not [name for name in direct.json() if "hakobune" in name]
    # Awake, the service is not reached through the waker, even with the router's secret.
    late = _to_the_waker(portal, service.hostname, settings.WAKER_SECRET)
    assert late.status_code == 503 and "awake now" in late.text
    print(f"woke in {woke_in:.2f} s")


def test_old_images_are_pruned_and_the_last_releases_kept(login, owner, team, worker, docker_client, settings):
    settings.KEEP_RELEASES = 2
    # Build leftovers are the engine's, shared with other runs on this host: not here.
    settings.BUILD_CACHE_PRUNE_HOURS = 0
    client = login(owner)
    deploy(client, team, "web", "One", new=True)
    deploy(client, team, "web", "Two")
    deploy(client, team, "web", "Three")
    service = Service.objects.get(team=team, name="web")
    def tags():
        repository = f"hakobune/{team.name}/web"
        return {tag for image in docker_client.images.list(name=repository) for tag in image.tags
                if tag.startswith(f"{repository}:")}

    assert len(tags()) == 3

    tasks.prune_images()

    assert tags() == {service.releases.get(number=n).image for n in (2, 3)}
    response = client.post(reverse("services:rollback", args=[team.name, "web", 1]), follow=True)
    assert "older than the last 2 releases" in response.content.decode()


def _rollback(client, team, service, number, docker_client):
    """Rolls back to v`number`; returns the new release once it is live and
    the one it replaced has drained (the deploy's lock is free again)."""
    before = service.releases.count()
    assert client.post(reverse("services:rollback", args=[team.name, service.name, number])).status_code == 302
    deadline = time.monotonic() + 120
    labels = [f"{LABEL_TEAM}={team.name}", f"{LABEL_SERVICE}={service.name}"]
    while time.monotonic() < deadline:
        release = service.releases.filter(number=before + 1).first()
        if release and release.status == "failed":
            return release
        if release and release.status == "live":
            running = {c.labels["org.hakobune.release"] for c in docker_client.containers.list(filters={"label": labels})}
            if running == {str(release.id)}:
                return release
        time.sleep(0.25)
    raise AssertionError(f"the rollback to v{number} did not end")


def test_pruning_never_removes_an_image_a_kept_release_needs_and_rollback_works_after(
    login, owner, team, worker, docker_client, settings
):
    settings.KEEP_RELEASES = 2
    settings.BUILD_CACHE_PRUNE_HOURS = 0
    client = login(owner)
    for greeting in ("One", "Two", "Three"):
        assert deploy(client, team, "web", greeting, new=greeting == "One").status == "live"
    service = Service.objects.get(team=team, name="web")
    image = {n: service.releases.get(number=n).image for n in (1, 2, 3)}
    # Back to Two: v4 runs v2's image, which is no longer among the last two releases by number but live.
    assert _rollback(client, team, service, 2, docker_client).status == "live"
    repository = f"hakobune/{team.name}/web"

    outcome = housekeeping.prune()

    tags = {tag for found in docker_client.images.list(name=repository) for tag in found.tags
            if tag.startswith(f"{repository}:")}
    assert tags == {image[2], image[3]}  # live (v4 = v2's) and v3; One went
    assert outcome["images_removed"] == 1
    assert get_through_router(service.hostname).text.startswith("Two")
    # Rolling back to a kept release still needs no rebuild, after the prune.
    v5 = _rollback(client, team, service, 3, docker_client)
    assert v5.status == "live", v5.failure_reason
    assert get_through_router(service.hostname).text.startswith("Three")


def test_deleting_a_service_removes_its_instances_route_images_and_rows(login, owner, team, worker, docker_client):
    client = login(owner)
    deploy(client, team, "doomed", "Bye", new=True)
    service = Service.objects.get(team=team, name="doomed")
    assert get_through_router(service.hostname).status_code == 200

    response = client.post(reverse("services:delete", args=[team.name, "doomed"]), {"confirm_name": "doomed"})
    assert response.status_code == 302
    deadline = time.monotonic() + 60
    while Service.objects.filter(id=service.id).exists() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not Service.objects.filter(id=service.id).exists()
    labels = [f"{LABEL_TEAM}={team.name}", f"{LABEL_SERVICE}=doomed"]
    assert docker_client.containers.list(all=True, filters={"label": labels}) == []
    assert get_through_router(service.hostname).status_code == 404
    repository = f"hakobune/{team.name}/doomed"
    assert not [tag for image in docker_client.images.list(name=repository) for tag in image.tags
                if tag.startswith(f"{repository}:")]


def test_a_custom_domain_leads_to_the_service_once_verified(login, owner, team, worker, settings):
    client = login(owner)
    deploy(client, team, "shop", "Welcome to the shop", new=True)
    service = Service.objects.get(team=team, name="shop")
    domain = f"www.{team.name}-shop.example"
    assert get_through_router(domain).status_code == 404

    url = reverse("services:domains", args=[team.name, "shop"])
    client.post(url, {"hostname": domain})
    time.sleep(1)
    assert get_through_router(domain).status_code == 404  # not proven yet
    name_server = DnsStub()
    settings.DOMAIN_VERIFY_NAMESERVERS, settings.DOMAIN_VERIFY_DNS_PORT = ["127.0.0.1"], name_server.port
    try:
        record = service.domains.get(hostname=domain)
        name_server.records[record.txt_name] = [record.txt_value]
        client.post(url, {"hostname": domain, "verify": "1"})
    finally:
        name_server.close()
    deadline = time.monotonic() + 30
    while get_through_router(domain).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.25)
    assert get_through_router(domain).text.startswith("Welcome to the shop")
    # A redeploy keeps it.
    deploy(client, team, "shop", "Still the shop")
    assert get_through_router(domain).text.startswith("Still the shop")
    assert get_through_router(service.hostname).text.startswith("Still the shop")


def test_a_private_service_has_no_address_and_its_team_reaches_it_by_name(login, owner, team, worker, docker_client):
    from hakobune.platform.services.services import create_service

    client = login(owner)
    deploy(client, team, "web", "Public face", new=True)
    create_service(team=team, name="internal", created_by=owner, public=False)
    built = deploy(client, team, "internal", "Private parts")
    assert built.status == "live", built.failure_reason
    internal = Service.objects.get(team=team, name="internal")
    assert get_through_router(internal.hostname).status_code == 404

    web = docker_client.containers.list(filters={"label": [f"{LABEL_TEAM}={team.name}", f"{LABEL_SERVICE}=web"]})[0]
    fetch = "import urllib.request; print(urllib.request.urlopen('http://internal:8080/', timeout=5).read().decode())"
    result = web.exec_run(["python3", "-c", fetch])
    assert result.exit_code == 0, result.output
    assert result.output.decode().startswith("Private parts")
