"""Runtime logs as stored by the log collector: an owner reads, filters and
follows them in the portal and the API; an outsider reads none; a page is
bounded; the housekeeping keeps them within their window and their team's
cap; what the collector stores is cut, masked, rate limited and resumable.
(Following real containers: tests/integration/test_runtime_logs.py.)"""

import json
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from hakobune.platform.observability import logstore
from hakobune.platform.observability import logcollector
from hakobune.platform.observability.logcollector import (
    MASK, Collector, FileFollower, Limiter, Origin, cut, drop_text, mask, request_points,
)
from hakobune.platform.observability.models import LogCursor, LogLine
from hakobune.platform.services.services import create_service
from hakobune.runtime.logfollow import LogFile, RawLine, _Stamps
from tests.conftest import read_stream
from tests.unit.test_api import bearer, deployed

pytestmark = pytest.mark.django_db(databases=["default", "logs"])

API = "/api/v1"


@pytest.fixture(autouse=True)
def _quick_streams(settings):
    settings.API_STREAM_MAX_SECONDS = 1
    settings.API_STREAM_POLL_SECONDS = 0.01


@pytest.fixture
def collected(dummy_backend):
    """The dummy runtime, as one whose logs the collector stores (the local one)."""
    dummy_backend.capabilities = dummy_backend.capabilities | {"collected_logs"}
    return dummy_backend


@pytest.fixture
def service(team, owner, collected, queued_tasks):
    service = create_service(team=team, name="hello", created_by=owner)
    deployed(service, owner, "hakobune/acme/hello:one")
    return service


def line(service, text, *, stream="stdout", release=1, ago=0):
    return LogLine.objects.create(
        service_id=service.id, team_id=service.team_id, timestamp=timezone.now() - timedelta(seconds=ago),
        instance="hakobune-acme-hello-v1-0-abc", release=release, stream=stream, text=text, size=len(text),
    )


def api(client, user, path):
    return client.get(path, **bearer(user))


# -- reading ---------------------------------------------------------------------------------


def test_an_owner_reads_the_last_lines_and_filters_them(client, owner, service):
    line(service, "GET / 200", ago=30)
    line(service, "Traceback: boom", stream="stderr", ago=20)
    line(service, "GET /health 200", release=2, ago=10)
    body = api(client, owner, f"{API}/teams/acme/services/hello/logs").json()
    assert [entry["text"] for entry in body["lines"]] == ["GET / 200", "Traceback: boom", "GET /health 200"]
    assert body["lines"][1]["stream"] == "stderr" and body["lines"][2]["release"] == 2
    only = lambda query: [e["text"] for e in api(client, owner, f"{API}/teams/acme/services/hello/logs?{query}").json()["lines"]]  # noqa: E731
    assert only("q=health") == ["GET /health 200"]
    assert only("stream=stderr") == ["Traceback: boom"]
    assert only("release=v2") == ["GET /health 200"]
    assert only("since=15s") == ["GET /health 200"]
    assert only("until=15s") == ["GET / 200", "Traceback: boom"]
    assert api(client, owner, f"{API}/teams/acme/services/hello/logs?stream=nope").status_code == 400


def test_the_lines_outlive_the_release_that_printed_them(client, owner, service):
    line(service, "printed by v1", release=1)
    deployed(service, owner, "hakobune/acme/hello:two")
    body = api(client, owner, f"{API}/teams/acme/services/hello/logs").json()
    assert [entry["text"] for entry in body["lines"]] == ["printed by v1"]


def test_an_outsider_reads_no_line(client, outsider, service):
    line(service, "private")
    assert api(client, outsider, f"{API}/teams/acme/services/hello/logs").status_code == 404
    client.force_login(outsider)
    assert client.get(reverse("observability:runtime_logs", args=["acme", "hello"])).status_code == 404


def test_a_page_never_holds_more_than_the_page_size(client, owner, service, settings):
    settings.LOGS_PAGE_MAX = 50
    LogLine.objects.bulk_create([
        LogLine(service_id=service.id, team_id=service.team_id, timestamp=timezone.now(), instance="i", stream="stdout",
                text=f"line {n}", size=6) for n in range(120)
    ])
    body = api(client, owner, f"{API}/teams/acme/services/hello/logs?tail=5000").json()
    assert len(body["lines"]) == 50 and body["lines"][-1]["text"] == "line 119"
    older = api(client, owner, f"{API}/teams/acme/services/hello/logs?before={body['lines'][0]['id']}").json()
    assert len(older["lines"]) == 50 and older["lines"][-1]["text"] == "line 69"
    client.force_login(owner)
    page = client.get(reverse("observability:runtime_logs", args=["acme", "hello"])).content.decode()
    assert page.count('class="line') == 50 and "line 119" in page and "Show older lines" in page


def test_the_portal_follows_with_the_lines_after_the_last_shown(client, owner, service):
    first = line(service, "before")
    client.force_login(owner)
    url = reverse("observability:runtime_logs", args=["acme", "hello"])
    page = client.get(url).content.decode()
    assert "before" in page and f"?after={first.id}" in page
    line(service, "after")
    more = client.get(f"{url}?after={first.id}").content.decode()
    assert "after" in more and "before" not in more
    filtered = client.get(f"{url}?q=nothing-like-it").content.decode()
    assert "Nothing printed yet that matches" in filtered


def test_following_through_the_api_sends_new_lines_once(client, owner, service):
    first = line(service, "one")
    stream = read_stream(client.get(f"{API}/teams/acme/services/hello/logs?follow=1&after={first.id - 1}",
                                    **bearer(owner)))
    events = [json.loads(part[len("data: "):]) for part in stream.split("\n\n") if part.startswith("data: {\"timestamp")]
    assert [event["text"] for event in events] == ["one"] and "event: timeout" in stream


def many(service, count, text=lambda n: f"GET /items/{n} 200", **fields):
    """`count` lines, one a second up to now, oldest first."""
    now = timezone.now()
    LogLine.objects.bulk_create([
        LogLine(service_id=service.id, team_id=service.team_id, timestamp=now - timedelta(seconds=count - n),
                instance="i", stream="stdout", text=text(n), size=20, **fields) for n in range(count)
    ])
    return list(LogLine.objects.filter(service_id=service.id).order_by("id").values_list("id", flat=True))


def shown(page: str) -> list[str]:
    return [piece.split("</span> ", 1)[1].split("</span>", 1)[0] for piece in page.split('class="line')[1:]]


def test_a_filter_reads_the_newest_lines_only_says_how_far_and_goes_on_from_there(client, owner, service, settings):
    """A piece of text has no index: a filter reads at most LOGS_SEARCH_LINES
    lines a page, so that finding something rare in a team's whole share
    never reads all of it; the owner sees how far back it read and asks for
    more."""
    settings.LOGS_SEARCH_LINES = 100
    ids = many(service, 250, text=lambda n: f"GET /items/{n} 200" + (" needle" if n in (10, 240) else ""))
    client.force_login(owner)
    url = reverse("observability:runtime_logs", args=["acme", "hello"])
    first = client.get(f"{url}?q=needle").content.decode()
    assert shown(first) == ["GET /items/240 200 needle"]
    assert "Searched 100 lines, back to" in first and "Search older lines" in first
    assert f"?before={ids[150]}&amp;q=needle" in first  # the oldest line it read: the 100th newest

    second = client.get(f"{url}?before={ids[150]}&q=needle").content.decode()
    assert shown(second) == [] and f"?before={ids[50]}&amp;q=needle" in second
    third = client.get(f"{url}?before={ids[50]}&q=needle").content.decode()
    assert shown(third) == ["GET /items/10 200 needle"]
    assert "Search older lines" not in third and "Show older lines" not in third  # nothing older is left

    # The same through the API, which says where to go on.
    body = api(client, owner, f"{API}/teams/acme/services/hello/logs?q=needle").json()
    assert [entry["text"] for entry in body["lines"]] == ["GET /items/240 200 needle"]
    assert body["before"] == ids[150] and body["searched_back_to"]
    older = api(client, owner, f"{API}/teams/acme/services/hello/logs?q=needle&before={ids[50]}").json()
    assert [entry["text"] for entry in older["lines"]] == ["GET /items/10 200 needle"]
    assert older["before"] is None and older["searched_back_to"] is None
    # Without a filter nothing is bounded but the page: the newest lines, and where the page before starts.
    plain = api(client, owner, f"{API}/teams/acme/services/hello/logs?tail=5").json()
    assert [entry["id"] for entry in plain["lines"]] == ids[-5:] and plain["before"] == ids[-5]


def test_a_filter_that_finds_nothing_in_the_lines_read_says_so(client, owner, service, settings):
    settings.LOGS_SEARCH_LINES = 100
    many(service, 150)
    client.force_login(owner)
    page = client.get(reverse("observability:runtime_logs", args=["acme", "hello"]) + "?q=absent").content.decode()
    assert "No line matches in the lines searched." in page and "Search older lines" in page


def test_a_time_range_needs_no_older_lines_once_the_lines_read_are_older_than_it(client, owner, service, settings):
    settings.LOGS_SEARCH_LINES = 100
    many(service, 250)  # one a second: the oldest read is 100 s old
    recent = api(client, owner, f"{API}/teams/acme/services/hello/logs?since=60s&q=items").json()
    assert len(recent["lines"]) in (59, 60, 61) and recent["before"] is None
    longer = api(client, owner, f"{API}/teams/acme/services/hello/logs?since=200s&q=items").json()
    assert len(longer["lines"]) == 100 and longer["before"] is not None and longer["searched_back_to"]


def test_following_with_a_filter_moves_on_past_lines_that_do_not_match(client, owner, service, settings):
    """A follower whose filter matches nothing still moves on: each look
    reads the lines stored since the last one (at most LOGS_SEARCH_LINES),
    never the same lines again."""
    settings.LOGS_SEARCH_LINES = 100
    ids = many(service, 250)
    from hakobune.platform.observability.logstore import LogFilter

    found, last = logstore.after(service.id, LogFilter(text="absent"), ids[0])
    assert found == [] and last == ids[100]
    found, last = logstore.after(service.id, LogFilter(text="absent"), last)
    assert found == [] and last == ids[200]
    found, last = logstore.after(service.id, LogFilter(text="absent"), last)
    assert found == [] and last == ids[-1]
    line(service, "absent at last")
    found, last = logstore.after(service.id, LogFilter(text="absent"), last)
    assert [entry.text for entry in found] == ["absent at last"] and last == found[0].id
    client.force_login(owner)
    url = reverse("observability:runtime_logs", args=["acme", "hello"])
    more = client.get(f"{url}?after={ids[-1]}&q=nothing-like-it").content.decode()
    assert f"?after={last}&amp;q=nothing-like-it" in more  # the page's next look starts after what was read


def test_an_owner_filters_by_process_type(client, owner, service):
    service.processes = {"worker": {"instances": 1}}
    service.save(update_fields=["processes"])
    LogLine.objects.create(service_id=service.id, team_id=service.team_id, timestamp=timezone.now(), instance="w",
                           process="worker", release=1, stream="stdout", text="job done", size=8)
    line(service, "GET / 200")
    client.force_login(owner)
    url = reverse("observability:runtime_logs", args=["acme", "hello"])
    page = client.get(url).content.decode()
    assert '<option value="worker">worker</option>' in page and "All processes" in page
    assert shown(client.get(f"{url}?process=worker").content.decode()) == ["job done"]
    assert shown(client.get(f"{url}?process=web").content.decode()) == ["GET / 200"]
    assert [e["text"] for e in api(client, owner, f"{API}/teams/acme/services/hello/logs?process=worker").json()["lines"]] \
        == ["job done"]


def test_the_cli_filters_and_says_when_it_read_only_the_newest_lines(client, owner, service, settings, monkeypatch, capsys):
    """`hakobune logs --grep … --process …` against the portal's API."""
    from hakobune import cli

    class PortalApi:
        def get(self, path, params=None):
            return client.get(f"{API}/{path}", params or {}, **bearer(owner)).json()

    settings.LOGS_SEARCH_LINES = 100
    many(service, 150, text=lambda n: f"request {n}" + (" slow" if n % 50 == 49 else ""), process="worker")
    monkeypatch.setattr(cli, "api_from_config", PortalApi)
    args = cli.build_parser().parse_args(["logs", "--team", "acme", "--service", "hello", "--grep", "slow",
                                          "--process", "worker"])
    assert args.func(args) == cli.EXIT_OK
    said = capsys.readouterr()
    assert [text.split(": ", 1)[1] for text in said.out.splitlines()] == ["request 99 slow", "request 149 slow"]
    assert "searched back to" in said.err and "older lines were not read" in said.err


# -- bounds ----------------------------------------------------------------------------------


def test_lines_past_the_window_go_and_a_team_over_its_cap_loses_its_oldest(service, settings):
    settings.LOGS_RETENTION_HOURS = 1
    line(service, "too old", ago=2 * 3600)
    kept = line(service, "recent")
    LogCursor.objects.create(source="container:gone", position=1)
    LogCursor.objects.create(source="container:here", position=1)
    LogCursor.objects.filter(source="container:gone").update(updated_at=timezone.now() - timedelta(hours=2))
    assert logstore.prune() == 1
    assert list(LogCursor.objects.values_list("source", flat=True)) == ["container:here"]
    assert list(LogLine.objects.values_list("text", flat=True)) == ["recent"]
    settings.LOGS_TEAM_MAX_MB = 1
    LogLine.objects.bulk_create([
        LogLine(service_id=service.id, team_id=service.team_id, timestamp=timezone.now(), instance="i", stream="stdout",
                text="x" * 1000, size=1000) for _ in range(1500)
    ])
    logstore.prune()
    assert logstore.team_bytes(service.team_id) <= 1024 * 1024
    assert not LogLine.objects.filter(id=kept.id).exists()  # the oldest went first
    assert LogLine.objects.order_by("-id").first().size == 1000


def test_a_long_line_is_cut_and_says_so():
    assert cut("short", 10) == "short"
    long = cut("é" * 100, 11)
    assert long.startswith("é" * 5) and long.endswith("(189 more bytes cut)")


def test_env_values_are_masked_longest_first():
    assert mask("token=abcdef123 and abcdef", ["abcdef123", "abcdef"]) == f"token={MASK} and {MASK}"
    # A value that overlaps another where it starts is still masked whole.
    origin = Origin(1, 1, "i", "web", 1, ["zzabc1", "abcdef123"])
    assert origin.mask("zzabcdef123") == f"zz{MASK}"
    assert origin.mask("nothing to hide") == "nothing to hide"


def test_a_line_the_engine_wrote_in_pieces_says_how_much_was_cut():
    assert cut("short", 4096, left_out=12) == "short … (12 more bytes cut)"


def test_the_rate_limit_counts_what_it_drops_and_says_it_once_per_window(settings):
    limiter = Limiter(rate=0.0001, burst=3)
    assert [limiter.take() for _ in range(10)] == [True] * 3 + [False] * 7
    assert limiter.due(10, now=limiter.first_drop + 5) == (0, 0.0)
    dropped, span = limiter.due(10, now=limiter.first_drop + 10)
    assert dropped == 7 and span == 10
    assert limiter.due(10, force=True) == (0, 0.0)
    settings.LOGS_RATE_PER_SECOND = 200
    assert drop_text(12345, 10).startswith("12,345 lines dropped in 10 s")


def test_the_collector_stores_lines_with_their_position_and_summarizes_drops(service, settings):
    collector = Collector(client=object(), access_log="")
    origin = Origin(service.id, service.team_id, "hakobune-acme-hello-v1-0-abc", "web", 1)
    for n in (1, 2):
        collector.lines.put(("c1", origin, RawLine("stdout", n * 1000, f"line {n}"), f"line {n}"))
    collector.positions["c1"] = 2000
    limiter = collector._limiter(origin)
    limiter.dropped, limiter.first_drop = 40, 0.0
    assert collector.flush() == 3
    assert LogCursor.objects.get(source="container:c1").position == 2000
    drop = LogLine.objects.get(stream="platform")
    assert drop.dropped == 40 and drop.text.startswith("40 lines dropped in") and drop.service_id == service.id
    # Lines dropped after the last kept one move the position on too, so a
    # restarted collector does not read (and count) them again.
    collector.positions["c1"] = 5000
    collector.flush()
    assert LogCursor.objects.get(source="container:c1").position == 5000


# -- the engine's log files --------------------------------------------------------------------


def engine_line(text: str, ns: int, stream: str = "stdout") -> str:
    """One line of a json-file log, as the Docker Engine writes it."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
    return json.dumps({"log": text, "stream": stream, "time": stamp}) + "\n"


def write(path, *lines: str) -> None:
    with open(path, "a") as handle:
        handle.write("".join(lines))


def texts_of(lines) -> list[str]:
    return [line.text for line in lines]


def read_all(log: LogFile) -> list[RawLine]:
    lines = []
    for _ in range(4):  # a rotation found costs a read
        lines += log.read()
    return lines


T = 1_764_460_800_000_000_000  # 2025-11-30 00:00 UTC, in nanoseconds


def test_a_log_file_is_read_as_the_engine_writes_it_and_across_its_rotation(tmp_path):
    path = tmp_path / "c1-json.log"
    write(path, engine_line("one\n", T), engine_line("two\r\n", T + 1, "stderr"))
    log = LogFile(str(path))
    assert [(line.stream, line.ns, line.text) for line in log.read()] == [("stdout", T, "one"),
                                                                          ("stderr", T + 1, "two")]
    # Half a line written: it is read once whole.
    three = engine_line("three\n", T + 2)
    write(path, three[:25])
    assert log.read() == []
    write(path, three[25:])
    assert texts_of(log.read()) == ["three"]
    # The engine renames the file and starts a new one: the old one's last
    # lines come first.
    write(path, engine_line("four\n", T + 3))
    path.rename(tmp_path / "c1-json.log.1")
    write(path, engine_line("five\n", T + 4))
    assert texts_of(read_all(log)) == ["four", "five"]
    # A collector coming back resumes after its last stored line, in
    # whichever file holds it.
    assert texts_of(read_all(LogFile(str(path), since_ns=T + 1))) == ["three", "four", "five"]
    assert texts_of(read_all(LogFile(str(path), since_ns=T + 4))) == []
    # The container removed, its folder gone: what is open is read to its end.
    write(path, engine_line("six\n", T + 5))
    path.unlink()
    assert texts_of(read_all(log)) == ["six"]


def test_resuming_in_a_large_log_file_starts_right_after_the_last_stored_line(tmp_path):
    path = tmp_path / "c1-json.log"
    write(path, *(engine_line(f"GET /items/{n} 200\n", T + n * 1000) for n in range(5000)))
    for last in (0, 1, 2500, 4998):
        lines = read_all(LogFile(str(path), since_ns=T + last * 1000))
        assert (lines[0].text, len(lines)) == (f"GET /items/{last + 1} 200", 4999 - last)
    assert read_all(LogFile(str(path), since_ns=T + 4999 * 1000)) == []


def test_a_long_line_the_engine_wrote_in_pieces_is_joined_and_bounded(tmp_path):
    path = tmp_path / "c1-json.log"
    write(path, engine_line("a" * 10, T), engine_line("b" * 10, T + 1), engine_line("c\n", T + 2),
          engine_line("next\n", T + 3))
    assert [(line.ns, line.text) for line in LogFile(str(path)).read()] == [(T + 2, "a" * 10 + "b" * 10 + "c"),
                                                                            (T + 3, "next")]
    bounded = LogFile(str(path))
    bounded.JOIN_MAX = 15
    long, _ = bounded.read()
    assert (long.text, long.left_out) == ("a" * 10 + "b" * 5, 6)


def test_the_collector_stores_a_containers_log_file_tagged_masked_and_findable_by_time(service, tmp_path,
                                                                                     monkeypatch):
    path = tmp_path / "c1-json.log"
    token = "tok-" + "x" * 20
    now = time.time_ns()
    write(path, engine_line(f"starting with {token}\n", now - 2_000_000_000),
          engine_line("Traceback: boom\n", now - 1_000_000_000, "stderr"))
    collector = Collector(client=object(), access_log="")
    origin = Origin(service.id, service.team_id, "hakobune-acme-hello-v3-worker-abc", "worker", 3, [token])
    collector.files["c1"] = FileFollower(LogFile(str(path)), origin, collector._limiter(origin))
    collector.read_files_once()
    assert collector.flush() == 2
    assert list(LogLine.objects.values_list("instance", "process", "release", "stream", "text")) == [
        ("hakobune-acme-hello-v3-worker-abc", "worker", 3, "stdout", f"starting with {MASK}"),
        ("hakobune-acme-hello-v3-worker-abc", "worker", 3, "stderr", "Traceback: boom"),
    ]
    assert LogCursor.objects.get(source="container:c1").position == now - 1_000_000_000
    # Stored as the ORM stores times: the time filters find them.
    recent = logstore.LogFilter(since=timezone.now() - timedelta(seconds=60))
    assert len(logstore.tail(service.id, recent).lines) == 2
    assert logstore.tail(service.id, logstore.LogFilter(until=timezone.now() - timedelta(seconds=60))).lines == []
    first = LogLine.objects.first()
    assert first.timestamp == logstore.EPOCH + timedelta(microseconds=(now - 2_000_000_000) // 1000)
    # A container that stopped: its file is read a last time, then let go.
    monkeypatch.setattr(logcollector, "END_SECONDS", 0)
    write(path, engine_line("bye\n", now))
    collector._ending("c1")
    collector.read_files_once()
    collector.flush()
    assert "c1" not in collector.files and LogLine.objects.last().text == "bye"


def test_a_flood_from_files_keeps_the_burst_and_positions_never_run_ahead_of_stored_lines(service, tmp_path,
                                                                                          settings, monkeypatch):
    """Lines read from files are stored a container at a time; a flush that
    is full leaves a container's lines, and its position, for the next."""
    settings.LOGS_RATE_PER_SECOND, settings.LOGS_BURST = 1, 30
    monkeypatch.setattr(logcollector, "FLUSH_MAX", 10)
    now = time.time_ns()
    collector = Collector(client=object(), access_log="")
    for name in ("c1", "c2"):
        path = tmp_path / f"{name}-json.log"
        # 50 lines within a millisecond: the burst (30) is kept, 20 are dropped.
        write(path, *(engine_line(f"{name} line {n}\n", now + n * 1000) for n in range(50)))
        origin = Origin(service.id, service.team_id, f"hakobune-acme-hello-{name}", "web", 1)
        collector.files[name] = FileFollower(LogFile(str(path)), origin, collector._limiter(origin))
    collector.read_files_once()
    # The service's one bucket: c1 takes the burst, c2's lines are all over it.
    assert collector.flush() == 30
    assert LogCursor.objects.get(source="container:c1").position == now + 49 * 1000
    assert LogCursor.objects.get(source="container:c2").position == now + 49 * 1000
    assert LogLine.objects.filter(instance="hakobune-acme-hello-c2").count() == 0

    # With room in the bucket again, two containers' 30 lines: a flush is
    # full (10) after the first container's whole batch.
    for name in collector.files:
        write(tmp_path / f"{name}-json.log", *(engine_line(f"{name} more {n}\n", now + (100 + n) * 1000)
                                              for n in range(15)))
    collector.limiters[service.id].tokens = 30
    collector.read_files_once()
    assert collector.flush() == 15 and list(collector.ready) == ["c2"]
    assert LogCursor.objects.get(source="container:c2").position == now + 49 * 1000  # its lines wait
    assert collector.flush(force_drops=True) == 16  # c2's 15 and the drop's line
    assert LogCursor.objects.get(source="container:c2").position == now + 114 * 1000
    drop = LogLine.objects.get(stream="platform")
    assert drop.dropped == 70 and drop.text.startswith("70 lines dropped")


def test_the_collector_gives_the_database_times_as_django_does():
    from django.db import connections

    connection = connections["logs"]
    for ns in (T, T + 123_456_789, T + 999, T + 1_000):  # a whole second, a fraction, under a microsecond
        expected = connection.ops.adapt_datetimefield_value(logstore.EPOCH + timedelta(microseconds=ns // 1000))
        assert logstore.stamper(connection)(ns) == expected


# -- parsing ---------------------------------------------------------------------------------


def test_the_engines_timestamps_are_read_to_the_nanosecond():
    stamps = _Stamps()
    assert stamps.ns("1970-01-01T00:00:01.000000002Z") == 1_000_000_002
    assert stamps.ns("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert stamps.ns("1970-01-01T00:00:02Z") == 2_000_000_000
    assert stamps.ns("not a time") is None


def test_a_periods_requests_become_counts_by_class_and_percentiles(service):
    stamp = timezone.now()
    requests = [(200, 0.010, 100)] * 8 + [(404, 0.020, 10), (500, 1.0, 0)]
    points = {(p.name, p.instance): p.value for p in request_points(service.id, requests, stamp)}
    assert points[("request_count", "response_code_class=2xx")] == 8
    assert points[("request_count", "response_code_class=4xx")] == 1
    assert points[("request_count", "response_code_class=5xx")] == 1
    assert points[("request_latency_p50_ms", "")] == 10.0
    assert points[("request_latency_p99_ms", "")] == 1000.0
    assert points[("response_bytes", "")] == 810


def test_a_runtime_that_keeps_its_own_logs_is_asked_for_them(client, owner, team, dummy_backend, queued_tasks):
    """Cloud Run keeps its services' logs (Cloud Logging): the card asks the runtime, not the store."""
    service = create_service(team=team, name="hello", created_by=owner)
    deployed(service, owner, "hakobune/acme/hello:one")
    line(service, "never shown: the runtime is asked")
    client.force_login(owner)
    page = client.get(reverse("observability:runtime_logs", args=["acme", "hello"])).content.decode()
    assert "hello is running" in page and "never shown" not in page and "Refresh" in page


def test_an_access_log_written_after_the_collector_started_is_read_from_its_start(service, tmp_path):
    log = tmp_path / "access.log"
    collector = Collector(client=object(), access_log=str(log))
    assert collector.read_access_log() == 0  # not written yet
    entry = {"request": {"host": f"{service.hostname}:8080"}, "status": 200, "duration": 0.004, "size": 12}
    log.write_text(json.dumps(entry) + "\n" + json.dumps(entry) + "\n")
    assert collector.read_access_log() == 2
    assert collector.read_access_log() == 0  # each request once


def test_the_collector_goes_on_while_the_engine_restarts(monkeypatch, settings, db):
    """The Docker Engine restarting takes its socket away for a moment: the
    docker SDK then raises requests' ConnectionError, which must not end the
    collector (it looks again at its next sweep)."""
    import requests

    from hakobune.platform.observability import logcollector

    monkeypatch.setattr(logcollector, "SWEEP_SECONDS", 0)
    monkeypatch.setattr(logcollector, "FLUSH_SECONDS", 0.01)
    collector = Collector(client=object(), access_log="")
    monkeypatch.setattr(collector, "_events", lambda: None)
    sweeps = []

    def sweep():
        sweeps.append(1)
        if len(sweeps) >= 3:
            collector.stopping.set()
        raise requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2, 'No such file'))")

    monkeypatch.setattr(collector, "sweep", sweep)
    collector.run()
    assert len(sweeps) == 3
