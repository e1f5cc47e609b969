"""Followed logs (?follow=1) are bounded per portal process: beyond the cap a
new stream is refused at once, in words, and pages still answer; a stream's
place is given back when it ends."""

import pytest

from hakobune.platform.api import streams
from hakobune.platform.services.services import create_service, deploy_service
from tests.conftest import read_stream, upload_of
from tests.unit.test_api import API, bearer


@pytest.fixture(autouse=True)
def _own_slots(settings, monkeypatch):
    settings.API_STREAM_MAX_SECONDS = 1
    settings.API_STREAM_POLL_SECONDS = 0.01
    monkeypatch.setattr(streams, "SLOTS", streams.StreamSlots())


@pytest.fixture
def running_build(team, owner, dummy_backend, queued_tasks):
    service = create_service(team=team, name="hello", created_by=owner)
    return deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)


def follow(client, user, build):
    return client.get(f"{API}/builds/{build.id}/log?follow=1", **bearer(user))


def test_streams_past_the_cap_are_refused_and_pages_still_answer(client, settings, owner, viewer, running_build):
    settings.API_STREAM_MAX_OPEN = 2
    held = [follow(client, owner, running_build), follow(client, viewer, running_build)]
    assert [r.status_code for r in held] == [200, 200] and streams.SLOTS.open == 2

    refused = follow(client, owner, running_build)
    assert refused.status_code == 503 and refused["Retry-After"] == "10"
    body = refused.json()
    assert body["code"] == "too_many_streams" and "Follow again in 10 seconds" in body["error"]
    # Pages and plain reads are no streams: they answer.
    assert client.get("/login/").status_code == 200
    assert client.get(f"{API}/builds/{running_build.id}/log", **bearer(owner)).status_code == 200

    # A stream that ends gives its place back.
    assert "event: timeout" in read_stream(held[0])
    assert streams.SLOTS.open == 1
    again = follow(client, owner, running_build)
    assert again.status_code == 200
    read_stream(again)
    read_stream(held[1])
    assert streams.SLOTS.open == 0


def test_one_person_cannot_take_every_stream(client, settings, owner, viewer, running_build):
    settings.API_STREAM_MAX_OPEN_PER_PERSON = 2
    mine = [follow(client, owner, running_build) for _ in range(2)]
    refused = follow(client, owner, running_build)
    assert refused.status_code == 429 and refused["Retry-After"] == "10"
    assert refused.json()["code"] == "too_many_streams_of_yours"
    # Someone else still follows.
    theirs = follow(client, viewer, running_build)
    assert theirs.status_code == 200
    for response in [*mine, theirs]:
        read_stream(response)
    assert streams.SLOTS.open == 0 and not streams.SLOTS.per_person


def test_runtime_logs_take_a_place_too(client, settings, owner, team, dummy_backend, queued_tasks):
    from tests.unit.test_api import deployed

    settings.API_STREAM_MAX_OPEN = 1
    service = create_service(team=team, name="hello", created_by=owner)
    deployed(service, owner, "hakobune/acme/hello:one")
    url = f"{API}/teams/acme/services/hello/logs?follow=1"
    first = client.get(url, **bearer(owner))
    assert first.status_code == 200
    second = client.get(url, **bearer(owner))
    assert second.status_code == 503 and second.json()["code"] == "too_many_streams"
    assert "hello is running" in read_stream(first)
    assert streams.SLOTS.open == 0
