"""The forms on the service page: each finds the service for who asks (404 for
outsiders, 403 below the role it needs), says what happened, and leads back
to the service page."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from hakobune.platform.services.services import create_service
from hakobune.runtime.base import RuntimeBackendError

PAGE = "/t/acme/hello/"


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="hello", created_by=owner)


def said(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def test_an_action_is_post_only_and_for_members_with_the_role(login, service, outsider, viewer, developer, owner):
    url = reverse("services:scale", args=["acme", "hello"])
    assert login(developer).get(url).status_code == 405
    assert login(outsider).post(url, {"instances": 2}).status_code == 404
    assert login(viewer).post(url, {"instances": 2}).status_code == 403
    delete = reverse("services:delete", args=["acme", "hello"])
    assert login(developer).post(delete, {"confirm_name": "hello"}).status_code == 403
    assert login(owner).post(reverse("services:scale", args=["acme", "nothing"]), {"instances": 2}).status_code == 404


def test_a_refusal_in_words_is_said_as_an_error_and_leads_back(login, service, developer):
    response = login(developer).post(reverse("services:scale", args=["acme", "hello"]), {"instances": "many"})
    assert response.status_code == 302 and response["Location"] == PAGE
    assert said(response) == [("error", "Give the number of instances as a whole number from 1 to 10.")]


def test_a_runtime_that_fails_is_said_as_an_error_too(login, service, developer, dummy_backend, monkeypatch):
    def refuse(ref):
        raise RuntimeBackendError("the Docker Engine did not answer")

    monkeypatch.setattr(dummy_backend, "stop", refuse)
    response = login(developer).post(reverse("services:stop", args=["acme", "hello"]))
    assert response.status_code == 302 and response["Location"] == PAGE
    assert said(response) == [("error", "the Docker Engine did not answer")]


def test_success_is_said_and_env_changes_lead_back_to_the_env_card(login, service, developer):
    response = login(developer).post(reverse("services:env", args=["acme", "hello"]), {"key": "GREETING", "value": "hi"})
    assert response["Location"] == PAGE + "#env"
    assert said(response) == [("success", "GREETING is set.")]
    response = login(developer).post(reverse("services:env", args=["acme", "hello"]), {"key": "1bad", "value": "x"})
    assert response["Location"] == PAGE + "#env"
    assert said(response)[-1] == ("error", "'1bad': Use letters, digits and underscores, and do not start with a digit (like DATABASE_URL).")


def test_deleting_leads_to_the_dashboard(login, service, owner, queued_tasks):
    response = login(owner).post(reverse("services:delete", args=["acme", "hello"]), {"confirm_name": "hello"})
    assert response["Location"] == reverse("services:dashboard")
    assert said(response) == [("success", "hello is being deleted: its instances, address and images.")]


def test_an_upload_over_the_cap_is_refused_in_words(login, service, developer, settings, queued_tasks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.SOURCE_MAX_ARCHIVE_BYTES = 1000
    upload = SimpleUploadedFile("big.zip", b"\0" * 5000, content_type="application/zip")
    response = login(developer).post(reverse("services:deploy", args=["acme", "hello"]), {"source": upload})
    assert response["Location"] == PAGE
    assert said(response)[-1][0] == "error" and said(response)[-1][1].startswith("The upload is larger than")
    assert not service.builds.exists()
