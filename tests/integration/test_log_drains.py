"""A team's log drain on the real runtime: the owner sets it on the team's
page, a fixture app (tests/fixtures/apps/chatty) prints a line per request,
the log collector (running as `make run` starts it) stores the lines and
sends them on; the receiver, an HTTP server of the test's own on loopback
(the collector's LOG_DRAIN_ALLOWED_HOSTS names it), gets each line, masked
as the store has it, and none of another team's."""

import secrets

import pytest
from django.urls import reverse

from hakobune.platform.accounts.services import create_team
from hakobune.platform.observability.logcollector import MASK
from hakobune.platform.observability.models import LogDrain
from hakobune.platform.services.services import set_env
from tests.integration.test_runtime_logs import deploy, wait_for
from tests.support.drain_receivers import HttpReceiver
from tests.support.infrastructure import get_through_router

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases=["default", "logs"])]


@pytest.fixture
def team(owner, team_name):
    return create_team(name=team_name, owner=owner)


def test_what_the_app_prints_reaches_the_teams_drain_and_only_its_own(
    login, owner, team, worker, log_collector, drain_port, settings,
):
    settings.LOG_DRAIN_ALLOWED_HOSTS = frozenset({f"127.0.0.1:{drain_port}"})
    client = login(owner)
    service = deploy(client, team, "chatty", new=True)
    token = secrets.token_hex(12)
    set_env(service=service, values={"API_TOKEN": token}, unset=[], created_by=owner)
    with HttpReceiver(port=drain_port) as receiver:
        answer = client.post(reverse("observability:log_drain", args=[team.name]),
                             {"url": f"http://127.0.0.1:{drain_port}/ingest"})
        assert answer.status_code == 302 and LogDrain.objects.filter(team=team).exists()
        service = deploy(client, team, "chatty", greeting="with a token")
        for n in range(3):
            assert get_through_router(service.hostname, f"/?id=drained-{n}").status_code == 200
        wanted = [f"handled request drained-{n}" for n in range(3)]
        wait_for(lambda: all(text in receiver.messages() for text in wanted), 15, "the lines at the drain")
        entry = next(e for e in receiver.accepted if e["message"] == "handled request drained-0")
        assert (entry["team"], entry["service"], entry["process"], entry["stream"]) == (team.name, "chatty", "web",
                                                                                        "stdout")
        assert entry["release"] == service.live_release.number
        # The token the app printed arrives masked, as it was stored.
        wait_for(lambda: any(text.startswith("starting with token") for text in receiver.messages()), 15,
                 "the start line at the drain")
        assert f"starting with token {MASK}" in receiver.messages()
        assert not [text for text in receiver.messages() if token in text]
        assert {e["team"] for e in receiver.accepted} == {team.name}
        assert [e["message"] for e in receiver.accepted].count("handled request drained-1") == 1
    page = client.get(reverse("observability:log_drain", args=[team.name])).content.decode()
    assert "sending" in page
