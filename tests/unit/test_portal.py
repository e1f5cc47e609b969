"""The portal as its people see it: the owner and a developer deploy, a viewer
looks, an outsider finds nothing."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from hakobune.platform.builds.models import Build
from hakobune.platform.services.models import Service
from hakobune.platform.services.services import create_service, deploy_service
from tests.conftest import upload_of


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="hello", created_by=owner)


def test_an_anonymous_visitor_is_sent_to_log_in(client, db):
    response = client.get(reverse("services:dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_logging_in_with_a_password_leads_to_the_dashboard(client, owner, team):
    response = client.post(reverse("accounts:login"), {"username": "olivia", "password": "correct horse battery"}, follow=True)
    assert response.status_code == 200
    assert b"acme" in response.content


def test_the_owner_creates_a_service_by_uploading_an_archive(login, owner, team, queued_tasks, dummy_backend,
                                                             django_capture_on_commit_callbacks):
    client = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("services:new", args=["acme"]), {"name": "hello", "source": upload_of("flask-hello", "zip")}
        )
    assert response.status_code == 302
    assert response["Location"] == reverse("services:detail", args=["acme", "hello"])
    service = Service.objects.get(team=team, name="hello")
    build = service.builds.get()
    assert build.source_filename == "flask-hello.zip"
    assert queued_tasks == [("admit_builds",)]

    page = client.get(response["Location"])
    assert b"Deploy #1" in page.content
    assert b"http://hello.acme.localhost:" in page.content


def test_a_developer_deploys_a_new_version(login, developer, service, queued_tasks):
    client = login(developer)
    response = client.post(
        reverse("services:deploy", args=["acme", "hello"]), {"source": upload_of("flask-hello")}
    )
    assert response.status_code == 302
    assert service.builds.count() == 1


def test_a_viewer_sees_the_service_but_cannot_deploy(login, viewer, service, queued_tasks):
    client = login(viewer)
    assert client.get(reverse("services:detail", args=["acme", "hello"])).status_code == 200
    response = client.post(reverse("services:deploy", args=["acme", "hello"]), {"source": upload_of("flask-hello")})
    assert response.status_code == 403
    assert client.get(reverse("services:new", args=["acme"])).status_code == 403
    assert service.builds.count() == 0


def test_an_outsider_finds_nothing(login, outsider, service, owner):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    client = login(outsider)
    for url in [
        reverse("services:new", args=["acme"]),
        reverse("services:detail", args=["acme", "hello"]),
        reverse("builds:detail", args=["acme", "hello", build.number]),
        reverse("builds:log", args=["acme", "hello", build.number]),
        reverse("builds:status", args=["acme", "hello", build.number]),
        reverse("observability:runtime_logs", args=["acme", "hello"]),
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("services:deploy", args=["acme", "hello"]), {"source": upload_of("flask-hello")}).status_code == 404
    assert b"hello" not in client.get(reverse("services:dashboard")).content


def test_a_file_that_is_not_an_archive_is_refused_and_nothing_is_created(login, owner, team, queued_tasks):
    client = login(owner)
    response = client.post(
        reverse("services:new", args=["acme"]),
        {"name": "hello", "source": SimpleUploadedFile("notes.txt", b"hello")},
    )
    assert response.status_code == 200
    assert b"notes.txt is not an archive Hakobune takes" in response.content
    assert not Service.objects.exists()
    assert queued_tasks == []


def test_a_bad_name_says_what_a_name_may_hold(login, owner, team, queued_tasks):
    client = login(owner)
    response = client.post(
        reverse("services:new", args=["acme"]), {"name": "My_App", "source": upload_of("flask-hello")}
    )
    assert b"Use lowercase letters, digits and hyphens" in response.content
    assert not Service.objects.exists()


def test_a_second_service_with_the_same_name_is_refused(login, owner, service, queued_tasks):
    client = login(owner)
    response = client.post(
        reverse("services:new", args=["acme"]), {"name": "hello", "source": upload_of("flask-hello")}
    )
    assert b"already has a service called hello" in response.content
    assert Build.objects.count() == 0


def test_the_build_log_returns_only_new_lines(login, owner, service, queued_tasks):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    build.log_lines.create(text="first line")
    second = build.log_lines.create(text="second line")
    client = login(owner)
    url = reverse("builds:log", args=["acme", "hello", build.number])
    everything = client.get(url).content.decode()
    assert "first line" in everything and "second line" in everything
    newer = client.get(f"{url}?after={second.id - 1}").content.decode()
    assert "first line" not in newer and "second line" in newer
    # While the build runs, the response carries the poller for the next lines.
    assert f"after={second.id}" in newer


def test_a_team_is_created_with_its_creator_as_owner(login, owner):
    client = login(owner)
    response = client.post(reverse("accounts:team_new"), {"name": "blue-team"})
    assert response.status_code == 302
    assert owner.memberships.get(team__name="blue-team").role == "owner"


def test_a_developer_redeploys_an_earlier_snapshot_and_a_viewer_cannot(login, developer, viewer, service, owner, queued_tasks):
    first = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    url = reverse("builds:redeploy", args=["acme", "hello", first.number])
    assert login(viewer).post(url).status_code == 403
    response = login(developer).post(url)
    assert response.status_code == 302
    again = service.builds.get(number=2)
    assert again.source_archive.name == first.source_archive.name
    assert again.trigger == "rebuild" and again.created_by == developer


def test_the_team_downloads_a_snapshot_and_an_outsider_cannot(login, viewer, outsider, service, owner):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    url = reverse("builds:source", args=["acme", "hello", build.number])
    response = login(viewer).get(url)
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="hello-deploy-1.tar.gz"'
    assert b"".join(response.streaming_content) == build.source_archive.open("rb").read()
    assert login(outsider).get(url).status_code == 404


def test_the_plan_is_shown_and_ejected_as_a_dockerfile(login, owner, viewer, outsider, service, queued_tasks):
    from hakobune.worker import tasks

    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    page = login(viewer).get(reverse("builds:detail", args=["acme", "hello", build.number])).content.decode()
    assert "The recipe for your container" in page and "gunicorn" in page
    dockerfile = login(viewer).get(reverse("builds:dockerfile", args=["acme", "hello", build.number]))
    text = dockerfile.content.decode()
    assert dockerfile["Content-Disposition"] == 'attachment; filename="Dockerfile.hakobune"'
    assert "\nFROM " in text and "COPY requirements.txt" in text and "gunicorn" in text
    assert login(outsider).get(reverse("builds:dockerfile", args=["acme", "hello", build.number])).status_code == 404
