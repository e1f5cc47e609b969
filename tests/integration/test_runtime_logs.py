"""Runtime logs and request metrics as an owner lives with them, on the real
runtime: a fixture app that prints a line per request (tests/fixtures/apps/
chatty) deployed through the portal, the log collector running as `make run`
starts it. Its lines show within 2 s and stay after a redeploy, a crash and
the removal of the container; its secret shows masked; N requests through
the router count as N in the request metric within one sample period; a
flood is cut to the rate limit, with what was dropped said and counted. A
collector that cannot read the engine's log files follows the engine's
stream instead, with the same lines."""

import secrets
import threading
import time

import docker
import pytest
from django.db.models import Sum
from django.urls import reverse

from hakobune.platform.accounts.services import create_team
from hakobune.platform.observability import logstore
from hakobune.platform.observability.logcollector import MASK, Collector
from hakobune.platform.observability.models import LogLine, MetricPoint
from hakobune.platform.services.models import Service
from hakobune.platform.services.services import create_service, set_env
from hakobune.runtime.docker_local import LABEL_MANAGED, LABEL_PROCESS, LABEL_SERVICE, LABEL_TEAM
from tests.conftest import archive_of
from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases=["default", "logs"])]

METRICS_PERIOD = 5  # the collector fixture's METRICS_SECONDS


@pytest.fixture
def team(owner, team_name):
    return create_team(name=team_name, owner=owner)


def deploy(client, team, name, *, new=False, greeting=None):
    from django.core.files.uploadedfile import SimpleUploadedFile

    extra = {"NOTE.txt": greeting} if greeting else None
    upload = SimpleUploadedFile("chatty.tar.gz", archive_of("chatty", extra=extra))
    url = reverse("services:new", args=[team.name]) if new else reverse("services:deploy", args=[team.name, name])
    response = client.post(url, {"name": name, "source": upload} if new else {"source": upload})
    assert response.status_code == 302
    service = Service.objects.get(team=team, name=name)
    build = wait_for_build(service.builds.order_by("-number").first())
    assert build.status == "live", "\n".join(build.log_lines.values_list("text", flat=True))
    service.refresh_from_db()
    return service


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s")


def texts(service, **filters):
    return list(LogLine.objects.filter(service_id=service.id, **filters).order_by("id").values_list("text", flat=True))


def test_lines_show_within_2_s_and_outlive_redeploys_crashes_and_removal(
    login, owner, team, worker, log_collector, docker_client,
):
    client = login(owner)
    deploy(client, team, "chatty", new=True)
    service = Service.objects.get(team=team, name="chatty")
    token = secrets.token_hex(12)
    set_env(service=service, values={"API_TOKEN": token}, unset=[], created_by=owner)
    service = deploy(client, team, "chatty", greeting="with a token")
    first_release = service.live_release.number

    # Each request's line is stored within 2 s of the answer.
    for n in range(5):
        assert get_through_router(service.hostname, f"/?id=first-{n}").status_code == 200
        started = time.monotonic()
        wait_for(lambda: f"handled request first-{n}" in texts(service), 2, f"the line of request first-{n}")
        assert time.monotonic() - started < 2
    assert get_through_router(service.hostname, "/warn?id=w1").status_code == 200
    wait_for(lambda: texts(service, stream="stderr", text__contains="warning w1"), 2, "the stderr line")

    # The token the app printed is stored masked, never in clear.
    start_lines = wait_for(lambda: texts(service, release=first_release, text__startswith="starting with token"), 10,
                           "the start line")
    assert set(start_lines) == {f"starting with token {MASK}"}
    assert not LogLine.objects.filter(service_id=service.id, text__contains=token).exists()
    card = client.get(reverse("observability:runtime_logs", args=[team.name, "chatty"]) + "?q=starting+with").content
    assert f"starting with token {MASK}".encode() in card and token.encode() not in card
    stored = LogLine.objects.filter(service_id=service.id, text__contains="first-0").first()
    assert stored.release == first_release and stored.process == "web" and stored.instance.startswith("hakobune-")

    # A redeploy replaces the containers; the old release's lines stay.
    service = deploy(client, team, "chatty", greeting="again")
    assert service.live_release.number > first_release
    assert get_through_router(service.hostname, "/?id=second").status_code == 200
    wait_for(lambda: "handled request second" in texts(service), 2, "the new release's line")
    assert [f"handled request first-{n}" in texts(service, release=first_release) for n in range(5)] == [True] * 5

    # A crash: what it said last is kept.
    try:
        get_through_router(service.hostname, "/crash", timeout=5)
    except Exception:  # noqa: BLE001 - the connection may die with the app
        pass
    wait_for(lambda: "about to crash" in texts(service), 5, "the crash's last line")

    # The containers removed: every line is still there, each once.
    # Sparse: a full listing inspects each container, and one its retirement removes meanwhile is a 404.
    for container in docker_client.containers.list(
        all=True, sparse=True, filters={"label": [f"{LABEL_TEAM}={team.name}", f"{LABEL_SERVICE}=chatty"]}
    ):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # an instance of the replaced release, which its retirement removed meanwhile
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: being removed already (its retirement, or the crash's)
                raise
    lines = texts(service)
    for wanted in [*(f"handled request first-{n}" for n in range(5)), "handled request second", "about to crash"]:
        assert lines.count(wanted) == 1, wanted

    # The owner reads them through the API, filtered.
    from tests.unit.test_api import bearer

    body = client.get(f"/api/v1/teams/{team.name}/services/chatty/logs?q=request+first-3", **bearer(owner)).json()
    assert [line["text"] for line in body["lines"]] == ["handled request first-3"]


def test_n_requests_through_the_router_count_as_n_within_one_period(login, owner, team, worker, log_collector):
    client = login(owner)
    service = deploy(client, team, "counted", new=True)
    requests_made = 23
    for n in range(requests_made):
        assert get_through_router(service.hostname, f"/?id={n}").status_code == 200
    done = time.monotonic()

    # Each request's line is stored within 2 s of the last answer, each once.
    wanted = [f"handled request {n}" for n in range(requests_made)]
    def each_once():
        lines = texts(service, text__startswith="handled request ")
        return all(lines.count(line) == 1 for line in wanted)

    wait_for(each_once, 2, f"the {requests_made} requests' lines")
    assert time.monotonic() - done <= 2

    def counted():
        total = MetricPoint.objects.filter(service=service, name="request_count").aggregate(total=Sum("value"))["total"]
        return total == requests_made and total

    wait_for(counted, METRICS_PERIOD + 2, f"{requests_made} requests in the request metric")
    assert time.monotonic() - done <= METRICS_PERIOD + 2
    assert MetricPoint.objects.filter(service=service, name="request_count",
                                      instance="response_code_class=2xx").exists()
    assert MetricPoint.objects.filter(service=service, name="request_latency_p95_ms", value__gt=0).exists()


def test_a_flood_is_cut_to_the_rate_limit_and_what_was_dropped_adds_up(
    login, owner, team, worker, log_collector, settings,
):
    client = login(owner)
    service = deploy(client, team, "flood", new=True)
    # As fast as it can, up to 20,000 lines a second: what the Docker Engine
    # keeps of a container's output (30 MB) and serves to a reader (about
    # 50,000 short lines a second here) bounds what any collector can see;
    # an app printing faster loses lines in the engine, before Hakobune
    # (docs/architecture.md, "Runtime logs").
    assert get_through_router(service.hostname, "/flood?seconds=10&per_second=20000").status_code == 200
    emitted_line = wait_for(lambda: texts(service, text__startswith="emitted "), 60, "the flood's end")
    emitted = int(emitted_line[0].split()[1])

    seen = {}

    def adds_up():
        seen["stored"] = LogLine.objects.filter(service_id=service.id, text__startswith="flood ").count()
        seen["dropped"] = LogLine.objects.filter(service_id=service.id, stream="platform").aggregate(
            n=Sum("dropped"))["n"] or 0
        return (seen["stored"], seen["dropped"]) if seen["stored"] + seen["dropped"] == emitted else None

    try:
        stored, dropped = wait_for(adds_up, 30, f"stored + dropped = {emitted} emitted")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen}") from None
    assert dropped > 0
    # At most the burst plus the rate for the flood's seconds (and the 3 s after it) were kept.
    assert stored <= settings.LOGS_BURST + settings.LOGS_RATE_PER_SECOND * 14
    summary = LogLine.objects.filter(service_id=service.id, stream="platform").first()
    assert " lines dropped in " in summary.text
    # The owner sees the drop said on the log card, among Hakobune's notes.
    notes = client.get(reverse("observability:runtime_logs", args=[team.name, "flood"]) + "?stream=platform")
    assert summary.text.encode() in notes.content

    # The team's share stays within its cap once the housekeeping ran: a cap
    # of half of what the flood left goes down to it, the oldest lines first.
    held = logstore.team_bytes(team.id)
    settings.LOGS_TEAM_MAX_MB = held / 2 / (1024 * 1024)
    newest = LogLine.objects.filter(team_id=team.id).order_by("-id").first()
    assert logstore.prune() > 0
    assert 0 < logstore.team_bytes(team.id) <= held / 2
    assert LogLine.objects.filter(id=newest.id).exists()
    assert not LogLine.objects.filter(service_id=service.id, text="flood 1").exists()


def test_a_collector_that_cannot_read_the_engines_log_files_follows_the_engines_stream(owner, team, docker_client):
    """Where the engine's log files cannot be read here (another log driver,
    an engine on another host, its data root not mounted), each container is
    followed through the engine's logs stream: the same lines, tagged alike."""
    from django.db import connections

    service = create_service(team=team, name="plain", created_by=owner)
    # An instance label of this test's own: the platform's collector (the
    # log_collector fixture) never follows this container.
    instance = f"hakobune-test-engine-stream-{secrets.token_hex(4)}"
    program = "import sys, time\nfor n in range(3):\n    print(f'hello {n}')\nprint('careful', file=sys.stderr)\n" \
              "sys.stdout.flush()\ntime.sleep(600)\n"
    container = docker_client.containers.run(
        "hakobune/stack-python:bookworm", ["python3", "-u", "-c", program], detach=True, network_mode="none",
        labels={LABEL_MANAGED: instance, LABEL_TEAM: team.name, LABEL_SERVICE: "plain", LABEL_PROCESS: "worker"},
    )
    collector = Collector(access_log="", read_files=False, instance=instance)

    def run():
        try:
            collector.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(texts(service)) == 4, 15, "the container's four lines")
        assert not collector.files and container.id in collector.followers
        stored = list(LogLine.objects.filter(service_id=service.id).order_by("stream", "id")
                      .values_list("stream", "text", "process", "instance"))
        assert stored == [("stderr", "careful", "worker", container.name)] + [
            ("stdout", f"hello {n}", "worker", container.name) for n in range(3)]
    finally:
        collector.stopping.set()
        container.remove(force=True)
        thread.join(timeout=30)
