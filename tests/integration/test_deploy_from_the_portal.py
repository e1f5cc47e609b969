"""A person uploads an app through the portal's form; a real worker builds it
on the real Docker Engine, runs it, and the router serves it."""

import pytest
from django.urls import reverse

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.models import Release, Service
from tests.conftest import upload_of

from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def team(owner, team_name):
    return create_team(name=team_name, owner=owner)


def upload(client, team, name, app):
    response = client.post(reverse("services:new", args=[team.name]), {"name": name, "source": upload_of(app)})
    assert response.status_code == 302, response.content.decode()[:2000]
    return Service.objects.get(team=team, name=name)


def test_an_uploaded_flask_app_answers_at_its_url(login, owner, team, worker, docker_client):
    client = login(owner)
    service = upload(client, team, "hello", "flask-hello")
    build = wait_for_build(service.builds.get())

    assert build.status == "live", build.failure_reason
    response = get_through_router(service.hostname)
    assert response.status_code == 200
    assert response.text.startswith("Hello from Hakobune!")
    # The app runs as the unprivileged user, not root.
    assert "uid 10001" in response.text

    page = client.get(reverse("services:detail", args=[team.name, "hello"])).content.decode()
    assert service.url in page and "live" in page

    # Its instance is published on loopback only, with the service's limits.
    container = docker_client.containers.list(filters={"label": f"org.hakobune.release={service.releases.get().id}"})[0]
    host_config = container.attrs["HostConfig"]
    assert {binding["HostIp"] for binding in container.ports[f"{service.port}/tcp"]} == {"127.0.0.1"}
    assert host_config["Memory"] == service.memory_mb * 1024 * 1024
    # The start-up CPU boost is over: the instance has the service's CPU limit.
    assert host_config["CpuQuota"] == int(float(service.cpu) * host_config["CpuPeriod"])
    assert host_config["CapDrop"] == ["ALL"] and host_config["ReadonlyRootfs"] is True


def test_a_broken_app_fails_with_its_reason_and_leaves_the_live_service_alone(login, owner, team, worker):
    client = login(owner)
    hello = upload(client, team, "hello", "flask-hello")
    assert wait_for_build(hello.builds.get()).status == "live"

    broken = upload(client, team, "broken", "flask-broken")
    build = wait_for_build(broken.builds.get())
    assert build.status == "failed"
    assert "The web process stopped while starting" in build.failure_reason
    log = "\n".join(build.log_lines.values_list("text", flat=True))
    assert "SyntaxError" in log

    page = client.get(reverse("services:detail", args=[team.name, "broken"])).content.decode()
    assert "This deploy failed." in page and "SyntaxError" in page

    # The same broken code deployed over the live service: the old release keeps serving.
    response = client.post(reverse("services:deploy", args=[team.name, "hello"]), {"source": upload_of("flask-broken")})
    assert response.status_code == 302
    failed = wait_for_build(hello.builds.order_by("-number").first())
    assert failed.status == "failed"
    hello.refresh_from_db()
    assert hello.live_release.build.number == 1
    assert hello.releases.filter(status=Release.Status.LIVE).count() == 1
    answer = get_through_router(hello.hostname)
    assert answer.status_code == 200 and answer.text.startswith("Hello from Hakobune!")


def test_hostile_archives_fail_and_the_same_worker_then_deploys_a_good_app(login, owner, team, worker):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.unit.test_hostile_sources import HOSTILE_ARCHIVES

    client = login(owner)
    hostile = ["zip slip", "symlink to /etc", "zip bomb", "truncated", "non-UTF-8 name"]
    for index, case in enumerate(hostile):
        filename, make, told = HOSTILE_ARCHIVES[case]
        response = client.post(
            reverse("services:new", args=[team.name]),
            {"name": f"hostile{index}", "source": SimpleUploadedFile(filename, make())},
        )
        assert response.status_code == 302
        build = wait_for_build(Service.objects.get(team=team, name=f"hostile{index}").builds.get())
        assert build.status == "failed" and told in build.failure_reason, (case, build.failure_reason)
    assert all(process.poll() is None for process in worker.values())  # every worker process is still there

    good = upload(client, team, "good", "flask-hello")
    assert wait_for_build(good.builds.get()).status == "live"
    assert get_through_router(good.hostname).status_code == 200
