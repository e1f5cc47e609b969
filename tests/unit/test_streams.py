"""Followed logs (?follow=1) are bounded per portal process: beyond the cap a
new stream is refused at once, in words, and pages still answer; a stream's
place is given back when it ends."""

import pytest

from hakobune.platform.services.services import create_service, deploy_service
from tests.conftest import read_stream, upload_of
from tests.unit.test_api import API, bearer


@pytest.fixture(autouse=True)
def _short_streams(settings):
    settings.API_STREAM_MAX_SECONDS = 1
    settings.API_STREAM_POLL_SECONDS = 0.01


@pytest.fixture
def running_build(team, owner, dummy_backend, queued_tasks):
    service = create_service(team=team, name="hello", created_by=owner)
    return deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)


@pytest.fixture
def follow(client):
    """Opens a stream as `user`; every stream a test left open is read to its
    end afterwards (they end within API_STREAM_MAX_SECONDS), giving its place back."""
    opened = []

    def open_stream(user, url):
        response = client.get(url, **bearer(user))
        if response.status_code == 200:
            opened.append(response)
        return response

    yield open_stream
    for response in opened:
        if not getattr(response, "_read", False):
            read_stream(response)


def _read(response):
    response._read = True
    return read_stream(response)


def test_streams_past_the_cap_are_refused_and_pages_still_answer(client, settings, owner, viewer, running_build, follow):
    settings.API_STREAM_MAX_OPEN = 2
    url = f"{API}/builds/{running_build.id}/log?follow=1"
    held = [follow(owner, url), follow(viewer, url)]
    assert [r.status_code for r in held] == [200, 200]

    refused = follow(owner, url)
    assert refused.status_code == 503 and refused["Retry-After"] == "10"
    body = refused.json()
    assert body["code"] == "too_many_streams" and "Follow again in 10 seconds" in body["error"]
    # Pages and plain reads are no streams: they answer.
    assert client.get("/login/").status_code == 200
    assert client.get(f"{API}/builds/{running_build.id}/log", **bearer(owner)).status_code == 200

    # A stream that ends gives its place back.
    assert "event: timeout" in _read(held[0])
    again = follow(owner, url)
    assert again.status_code == 200 and "event: timeout" in _read(again)


def test_one_person_cannot_take_every_stream(settings, owner, viewer, running_build, follow):
    settings.API_STREAM_MAX_OPEN_PER_PERSON = 2
    url = f"{API}/builds/{running_build.id}/log?follow=1"
    assert [follow(owner, url).status_code for _ in range(2)] == [200, 200]
    refused = follow(owner, url)
    assert refused.status_code == 429 and refused["Retry-After"] == "10"
    assert refused.json()["code"] == "too_many_streams_of_yours"
    # Someone else still follows.
    assert follow(viewer, url).status_code == 200


def test_runtime_logs_take_a_place_too(settings, owner, team, dummy_backend, queued_tasks, follow):
    from tests.unit.test_api import deployed

    settings.API_STREAM_MAX_OPEN = 1
    service = create_service(team=team, name="hello", created_by=owner)
    deployed(service, owner, "hakobune/acme/hello:one")
    url = f"{API}/teams/acme/services/hello/logs?follow=1"
    first = follow(owner, url)
    assert first.status_code == 200
    second = follow(owner, url)
    assert second.status_code == 503 and second.json()["code"] == "too_many_streams"
    assert "hello is running" in _read(first)
    assert follow(owner, url).status_code == 200
