"""A team's log drain, as its people live with it: an owner sends the team's
runtime logs to an endpoint of the team's own (portal and API), members see
how the sending goes, nobody else sees or changes it; the address passes the
SSRF guard when saved and again at each connection; the lines an app
printed reach an HTTP receiver and a syslog listener on loopback, in
batches; a failing endpoint is tried again later and its error shown; a
drain far behind drops its oldest lines and says so; no team's drain ever
gets another team's lines. (With a real container and the collector:
tests/integration/test_log_drains.py.)"""

import socket
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from hakobune.platform.accounts.services import create_team
from hakobune.platform.observability import drains
from hakobune.platform.observability.drains import Entry, syslog_frame
from hakobune.platform.observability.models import LogDrain, LogLine
from hakobune.platform.services.services import create_service
from tests.support.drain_receivers import HttpReceiver, SyslogReceiver, self_signed_for_loopback
from tests.unit.test_api import bearer

pytestmark = pytest.mark.django_db(databases=["default", "logs"])

API = "/api/v1/teams/acme/log-drain/"
# A public address (example.com's) for the name logs.example.com: the guard
# takes it as public; these tests never connect to it (`connections`).
PUBLIC = "93.184.215.14"


@pytest.fixture(autouse=True)
def names(monkeypatch):
    """DNS as the tests say: logs.example.com is public until a test points it elsewhere."""
    answers = {"logs.example.com": [PUBLIC]}
    monkeypatch.setattr(drains, "resolver", lambda host, port: answers.get(host, []))
    return answers


@pytest.fixture(autouse=True)
def connections(monkeypatch):
    """Every connection the drains open, recorded; one to an address other
    than loopback is refused here, so no test can reach one even if the
    guard let it through."""
    opened = []
    real = socket.create_connection

    def connect(address, *args, **kwargs):
        opened.append(address)
        if address[0] != "127.0.0.1":
            raise AssertionError(f"a drain tried to connect to {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(drains.socket, "create_connection", connect)
    return opened


@pytest.fixture
def service(team, owner, dummy_backend, queued_tasks):
    return create_service(team=team, name="hello", created_by=owner)


@pytest.fixture
def receiver(settings):
    with HttpReceiver() as started:
        settings.LOG_DRAIN_ALLOWED_HOSTS = frozenset({f"127.0.0.1:{started.port}"})
        yield started


def line(service, text, *, stream="stdout", team_id=None):
    return LogLine.objects.create(
        service_id=service.id, team_id=team_id or service.team_id, timestamp=timezone.now(),
        instance=f"hakobune-{service.team.name}-{service.name}-v1-web-0-abc", release=1, stream=stream, text=text,
        size=len(text),
    )


def put(client, user, url):
    return client.put(API, data={"url": url}, content_type="application/json", **bearer(user))


# -- who may see and change it ----------------------------------------------------------------


def test_an_owner_sets_reads_changes_and_removes_the_drain_and_its_secret_is_never_shown(client, owner, viewer, team):
    answer = put(client, owner, "https://user:pa55word@logs.example.com/ingest?token=s3cret-token")
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert body["url"] == "https://logs.example.com/ingest" and body["kind"] == "https"
    assert body["failures"] == 0 and body["last_error"] is None and body["shipped_lines"] == 0
    drain = LogDrain.objects.get(team=team)
    assert "s3cret-token" not in drain.url_encrypted and "pa55word" not in drain.url_encrypted
    # A viewer reads how it goes, without the secret either.
    seen = client.get(API, **bearer(viewer))
    assert seen.status_code == 200 and "s3cret" not in seen.content.decode()
    # Changed to syslog over TLS; then removed.
    answer = put(client, owner, "syslog+tls://logs.example.com:6514")
    assert answer.json()["kind"] == "syslog" and answer.json()["url"] == "syslog+tls://logs.example.com:6514"
    assert client.delete(API, **bearer(owner)).status_code == 204
    gone = client.get(API, **bearer(owner))
    assert gone.status_code == 404 and gone.json()["code"] == "no_log_drain"
    assert not LogDrain.objects.exists()


def test_members_who_are_not_owners_cannot_change_it_and_outsiders_do_not_see_it(
    client, owner, developer, viewer, outsider, team, login,
):
    assert put(client, owner, "https://logs.example.com/ingest").status_code == 200
    for member in (developer, viewer):
        assert put(client, member, "https://logs.example.com/other").status_code == 403
        assert client.delete(API, **bearer(member)).status_code == 403
    assert LogDrain.objects.get(team=team).url_shown == "https://logs.example.com/ingest"
    for method in ("get", "delete"):
        assert getattr(client, method)(API, **bearer(outsider)).status_code == 404
    assert put(client, outsider, "https://logs.example.com/theirs").status_code == 404
    # The portal alike: the developer sees the drain and no form; the outsider not even the page.
    page = login(developer).get(reverse("observability:log_drain", args=["acme"]))
    assert page.status_code == 200 and "https://logs.example.com/ingest" in page.content.decode()
    assert 'name="url"' not in page.content.decode()
    login(developer).post(reverse("observability:log_drain", args=["acme"]), {"url": "https://logs.example.com/x"})
    assert LogDrain.objects.get(team=team).url_shown == "https://logs.example.com/ingest"
    assert login(outsider).get(reverse("observability:log_drain", args=["acme"])).status_code == 404
    assert login(outsider).post(reverse("observability:log_drain", args=["acme"]),
                                {"url": "https://logs.example.com/x"}).status_code == 404


def test_an_owner_sets_and_removes_it_on_the_teams_page(client, owner, team, login):
    portal = login(owner)
    page = portal.get(reverse("observability:log_drain", args=["acme"]))
    assert "This team has no log drain." in page.content.decode() and 'name="url"' in page.content.decode()
    answer = portal.post(reverse("observability:log_drain", args=["acme"]),
                         {"url": "https://logs.example.com/ingest?token=abc123456"}, follow=True)
    assert "https://logs.example.com/ingest" in answer.content.decode()
    assert "abc123456" not in answer.content.decode()
    refused = portal.post(reverse("observability:log_drain", args=["acme"]), {"url": "https://10.0.0.5/"}, follow=True)
    assert "private network address" in refused.content.decode()
    assert LogDrain.objects.get(team=team).url_shown == "https://logs.example.com/ingest"
    portal.post(reverse("observability:log_drain", args=["acme"]), {"remove": "1"})
    assert not LogDrain.objects.exists()


# -- the address --------------------------------------------------------------------------------


@pytest.mark.parametrize("url, why", [
    ("https://10.0.0.5/ingest", "private network address"),
    ("https://192.168.1.20/", "private network address"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[fd00::1]/", "private network address"),
    ("https://metadata.google.internal/computeMetadata/v1/", "internal address"),
    ("https://localhost:8443/", "internal address"),
    ("https://127.0.0.1:9/", "loopback"),
    ("https://0x7f.1/", "unusual form"),
    ("https://inside.example.com/", "private network address"),  # a public name that points inside
    ("http://logs.example.com/ingest", "not allowed"),  # plain http only for allow-listed hosts
    ("syslog://logs.example.com:514", "not allowed"),
    ("ftp://logs.example.com/", "Give an https:// address"),
    ("logs.example.com:6514", "Give an https:// address"),
    ("syslog+tls://logs.example.com:6514/path", "host and a port only"),
])
def test_private_link_local_and_metadata_addresses_are_refused_when_saved(client, owner, team, names, connections, url,
                                                                         why):
    names["inside.example.com"] = ["10.1.2.3"]
    answer = put(client, owner, url)
    assert answer.status_code == 400 and why in answer.json()["error"], answer.json()
    assert not LogDrain.objects.exists()
    assert connections == []


def test_a_name_that_later_points_inside_is_refused_at_connect_time(client, owner, service, names, connections):
    assert put(client, owner, "https://logs.example.com/ingest").status_code == 200
    line(service, "GET / 200")
    names["logs.example.com"] = ["169.254.169.254"]  # DNS rebinding: now the metadata address
    drain = LogDrain.objects.get()
    assert drains.ship(drain.id) == 0
    assert connections == []
    drain.refresh_from_db()
    assert drain.failures == 1 and drain.last_error_rule == "drain.address_refused"
    assert "link-local" in drain.last_error_text and drain.position == 0
    assert client.get(API, **bearer(owner)).json()["last_error"]["rule"] == "drain.address_refused"


# -- shipping ------------------------------------------------------------------------------------


def test_the_lines_an_app_printed_reach_an_http_receiver_in_batches(client, owner, service, receiver, settings,
                                                                   connections, login):
    line(service, "printed before the drain: not sent")
    settings.LOG_DRAIN_BATCH_LINES = 3
    url = f"http://drain:pa55word@127.0.0.1:{receiver.port}/ingest?token=t0ken"
    assert put(client, owner, url).status_code == 200
    for n in range(7):
        line(service, f"GET /{n} 200", stream="stderr" if n == 3 else "stdout")
    drain = LogDrain.objects.get()
    assert drains.ship(drain.id) == 7
    assert receiver.messages() == [f"GET /{n} 200" for n in range(7)]
    assert [len(entries) for _, _, entries in receiver.requests] == [3, 3, 1]
    path, headers, entries = receiver.requests[0]
    assert path == "/ingest?token=t0ken" and headers["Content-Type"] == "application/x-ndjson"
    assert headers["Authorization"] == "Basic ZHJhaW46cGE1NXdvcmQ="  # drain:pa55word
    first = entries[0]
    assert (first["team"], first["service"], first["process"], first["release"], first["stream"]) == (
        "acme", "hello", "web", 1, "stdout")
    assert first["instance"].startswith("hakobune-acme-hello") and first["time"].endswith("Z")
    assert receiver.accepted[3]["stream"] == "stderr"
    # Kept alive: one connection for the three batches, to the checked address.
    assert connections == [("127.0.0.1", receiver.port)]
    # Nothing new: nothing sent again.
    assert drains.due_drains() == [] and drains.ship(drain.id) == 0 and len(receiver.requests) == 3
    drain.refresh_from_db()
    assert drain.shipped_lines == 7 and drain.last_success_at is not None
    page = login(owner).get(reverse("observability:log_drain", args=["acme"])).content.decode()
    assert "sending" in page and "t0ken" not in page and "pa55word" not in page


def test_the_lines_reach_a_syslog_listener_over_tcp_as_rfc_5424_messages(client, owner, service, settings):
    with SyslogReceiver() as listener:
        settings.LOG_DRAIN_ALLOWED_HOSTS = frozenset({f"127.0.0.1:{listener.port}"})
        assert put(client, owner, f"syslog://127.0.0.1:{listener.port}").status_code == 200
        line(service, "GET / 200")
        line(service, "Traceback: boom", stream="stderr")
        assert drains.ship(LogDrain.objects.get().id) == 2
        messages = listener.wait_for(2)
    assert len(messages) == 2
    header, text = messages[0].split(" - ", 1)
    priority_version, stamp, hostname, app, procid, msgid = header.split(" ")
    assert priority_version == "<14>1" and stamp.endswith("Z")  # user.info
    assert (hostname, app, msgid) == ("hello.acme", "web", "stdout") and procid.startswith("hakobune-acme-hello")
    assert text == "GET / 200"
    assert messages[1].startswith("<11>1 ") and messages[1].endswith(" stderr - Traceback: boom")  # user.err


def test_the_lines_reach_a_syslog_listener_over_tls_checked_against_its_certificate(
    client, owner, service, settings, tmp_path,
):
    certificate, server_tls = self_signed_for_loopback(tmp_path)
    with SyslogReceiver(tls=server_tls) as listener:
        settings.LOG_DRAIN_ALLOWED_HOSTS = frozenset({f"127.0.0.1:{listener.port}"})
        assert put(client, owner, f"syslog+tls://127.0.0.1:{listener.port}").status_code == 200
        drain = LogDrain.objects.get()
        line(service, "over TLS")
        # Without the certificate's authority the connection is refused, and said.
        assert drains.ship(drain.id) == 0
        drain.refresh_from_db()
        assert drain.last_error_rule == "drain.tls" and "certificate" in drain.last_error_text
        settings.LOG_DRAIN_CA_BUNDLE = str(certificate)
        LogDrain.objects.update(next_attempt_at=None)
        assert drains.ship(drain.id) == 1
        assert listener.wait_for(1)[0].endswith(" - over TLS")


def test_the_lines_reach_an_https_receiver_checked_against_its_certificate(client, owner, service, settings, tmp_path):
    certificate, server_tls = self_signed_for_loopback(tmp_path)
    settings.LOG_DRAIN_CA_BUNDLE = str(certificate)
    with HttpReceiver(tls=server_tls) as receiver:
        settings.LOG_DRAIN_ALLOWED_HOSTS = frozenset({f"127.0.0.1:{receiver.port}"})
        assert put(client, owner, f"https://127.0.0.1:{receiver.port}/ingest").status_code == 200
        line(service, "over HTTPS")
        assert drains.ship(LogDrain.objects.get().id) == 1
        assert receiver.messages() == ["over HTTPS"]


def test_a_drain_that_answers_500_backs_off_and_shows_the_error(client, owner, service, receiver, login):
    assert put(client, owner, f"http://127.0.0.1:{receiver.port}/ingest").status_code == 200
    drain = LogDrain.objects.get()
    receiver.status = 500
    line(service, "one")
    line(service, "two")
    assert drains.ship(drain.id) == 0
    drain.refresh_from_db()
    assert drain.failures == 1 and drain.position == 0 and drain.last_error_rule == "drain.http_status"
    assert drain.last_error_params == {"status": 500}
    waited = (drain.next_attempt_at - timezone.now()).total_seconds()
    assert 0 < waited <= 2
    # Not tried again before its time; then tried, and waiting twice as long.
    assert drains.due_drains() == []
    assert drains.due_drains(now=timezone.now() + timedelta(seconds=3)) == [drain.id]
    drains.ship(drain.id)
    drain.refresh_from_db()
    assert drain.failures == 2 and 2 < (drain.next_attempt_at - timezone.now()).total_seconds() <= 4
    body = client.get(API, **bearer(owner)).json()
    assert body["failures"] == 2 and "HTTP 500" in body["last_error"]["message"]
    page = login(owner).get(reverse("observability:log_drain", args=["acme"])).content.decode()
    assert "failing" in page and "The endpoint answered HTTP 500" in page
    # The endpoint is back: the lines that waited arrive, once each.
    receiver.status = 200
    assert drains.ship(drain.id) == 2
    assert receiver.messages() == ["one", "two"]
    drain.refresh_from_db()
    assert drain.failures == 0 and drain.next_attempt_at is None and drain.last_success_at is not None
    assert len(receiver.requests) == 3


def test_an_endpoint_that_does_not_answer_is_a_timeout_and_nothing_waits_longer(client, owner, service, settings):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    port = silent.getsockname()[1]
    try:
        settings.LOG_DRAIN_ALLOWED_HOSTS = frozenset({f"127.0.0.1:{port}"})
        settings.LOG_DRAIN_TIMEOUT = 1
        assert put(client, owner, f"http://127.0.0.1:{port}/").status_code == 200
        line(service, "nobody listens")
        started = time.monotonic()
        assert drains.ship(LogDrain.objects.get().id) == 0
        assert time.monotonic() - started < 5
    finally:
        silent.close()
    drain = LogDrain.objects.get()
    assert drain.last_error_rule == "drain.timeout" and drain.position == 0


def test_a_redirect_is_not_followed(client, owner, service, receiver):
    assert put(client, owner, f"http://127.0.0.1:{receiver.port}/ingest").status_code == 200
    receiver.status = 302
    line(service, "one")
    drains.ship(LogDrain.objects.get().id)
    assert LogDrain.objects.get().last_error_rule == "drain.redirect"


def test_another_teams_lines_never_reach_a_drain(client, owner, outsider, service, settings, dummy_backend):
    theirs = create_service(team=create_team(name="rival", owner=outsider), name="hello", created_by=outsider)
    with HttpReceiver() as ours_receiver, HttpReceiver() as their_receiver:
        settings.LOG_DRAIN_ALLOWED_HOSTS = frozenset(
            {f"127.0.0.1:{ours_receiver.port}", f"127.0.0.1:{their_receiver.port}"})
        assert put(client, owner, f"http://127.0.0.1:{ours_receiver.port}/").status_code == 200
        answer = client.put("/api/v1/teams/rival/log-drain/", data={"url": f"http://127.0.0.1:{their_receiver.port}/"},
                            content_type="application/json", **bearer(outsider))
        assert answer.status_code == 200
        for n in range(5):
            line(service, f"acme's line {n}")
            line(theirs, f"rival's line {n}")
        # A line claiming to be acme's but printed by rival's service is not sent to acme.
        line(theirs, "rival's line filed under acme", team_id=service.team_id)
        for drain in LogDrain.objects.all():
            drains.ship(drain.id)
        assert ours_receiver.messages() == [f"acme's line {n}" for n in range(5)]
        assert their_receiver.messages() == [f"rival's line {n}" for n in range(5)]
        assert {entry["team"] for entry in ours_receiver.accepted} == {"acme"}


def test_a_drain_far_behind_drops_its_oldest_lines_and_says_how_many(client, owner, service, receiver, settings, login):
    settings.LOG_DRAIN_MAX_BACKLOG = 5
    settings.LOG_DRAIN_BATCH_LINES = 2
    assert put(client, owner, f"http://127.0.0.1:{receiver.port}/").status_code == 200
    for n in range(12):
        line(service, f"line {n}")
    assert drains.ship(LogDrain.objects.get().id) == 5
    assert receiver.messages() == [f"line {n}" for n in range(7, 12)]
    drain = LogDrain.objects.get()
    assert drain.dropped_lines == 7 and drain.shipped_lines == 5
    assert client.get(API, **bearer(owner)).json()["dropped_lines"] == 7
    page = login(owner).get(reverse("observability:log_drain", args=["acme"])).content.decode()
    assert "more than 5 lines behind" in page


def test_a_drain_held_by_another_shipper_is_left_to_it(client, owner, service, receiver):
    assert put(client, owner, f"http://127.0.0.1:{receiver.port}/").status_code == 200
    line(service, "once")
    LogDrain.objects.update(leased_until=timezone.now() + timedelta(seconds=30))
    assert drains.due_drains() == []
    assert drains.ship(LogDrain.objects.get().id) == 0 and receiver.requests == []
    LogDrain.objects.update(leased_until=timezone.now() - timedelta(seconds=1))  # its holder died
    assert drains.ship(LogDrain.objects.get().id) == 1
    assert LogDrain.objects.get().leased_until is None


def test_the_same_address_again_keeps_the_position_and_a_new_one_starts_from_now(client, owner, service, receiver):
    url = f"http://127.0.0.1:{receiver.port}/"
    assert put(client, owner, url).status_code == 200
    line(service, "one")
    drains.ship(LogDrain.objects.get().id)
    assert put(client, owner, url).json()["shipped_lines"] == 1
    line(service, "two")
    answer = put(client, owner, url + "other")
    assert answer.json()["shipped_lines"] == 0
    assert drains.due_drains() == []


def test_syslog_fields_are_printable_and_bounded():
    entry = Entry(1, timezone.now(), "acme", "hello", "inst ance" + "x" * 200, "", 1, "platform", "12 lines dropped")
    message = syslog_frame(entry).decode()
    length, rest = message.split(" ", 1)
    assert int(length) == len(rest.encode())
    fields = rest.split(" ")
    assert fields[0] == "<13>1" and fields[3] == "-" and len(fields[4]) == 128 and "inst_ance" in fields[4]


@pytest.mark.django_db(transaction=True, databases=["default", "logs"])
def test_the_shipper_sends_new_lines_by_itself_off_the_request_path(owner, team, service, receiver, settings):
    settings.LOG_DRAIN_POLL_SECONDS = 0.05
    drains.set_drain(team=team, url=f"http://127.0.0.1:{receiver.port}/", created_by=owner)
    shipper = drains.Shipper()
    shipper.start()
    try:
        for n in range(3):
            line(service, f"live {n}")
        assert receiver.wait_for(3) and receiver.messages() == ["live 0", "live 1", "live 2"]
    finally:
        shipper.stop()
        shipper.thread.join(timeout=5)
    assert not shipper.thread.is_alive()
