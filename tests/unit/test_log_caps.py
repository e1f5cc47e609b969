"""What a person's code prints cannot grow without bound in Hakobune: a line
without a newline is cut at MAX_LINE_CHARS while it is read (the rest is
counted, not held), and a build's log keeps a bounded number of lines and
bytes, saying how much it left out, while the platform's own words are
always kept."""

import pytest

from hakobune.platform.builds.log import BuildLog
from hakobune.platform.builds.models import Build, BuildLogLine
from hakobune.platform.services.services import create_service
from hakobune.worker.logcap import MAX_LINE_CHARS, LineSplitter, LogBudget


def test_a_line_without_a_newline_is_cut_as_it_is_read():
    splitter = LineSplitter()
    chunk = "x" * 65_536
    for _ in range(160):  # 10 MB of one line, in the chunks a build stream gives
        assert list(splitter.feed(chunk)) == []
        assert splitter._pending_chars <= MAX_LINE_CHARS  # held: at most one line's worth
    line, after = list(splitter.feed("\nnext line\n"))
    assert line == "x" * MAX_LINE_CHARS + f" … [{160 * 65_536 - MAX_LINE_CHARS:,} more characters not kept]"
    assert after == "next line"
    assert list(splitter.flush()) == []


def test_lines_split_across_chunks_come_out_whole():
    splitter = LineSplitter()
    lines = [*splitter.feed("Step 1/4 : FR"), *splitter.feed("OM python\r\nCollecting fla"), *splitter.feed("sk\n")]
    assert lines == ["Step 1/4 : FROM python", "Collecting flask"]
    assert list(splitter.feed("no newline at the end")) == [] and list(splitter.flush()) == ["no newline at the end"]


def test_a_budget_counts_what_it_does_not_keep():
    budget = LogBudget(max_lines=2, max_bytes=1_000_000)
    assert [budget.admit(line) for line in ("a", "b", "c", "d")] == [True, True, False, False]
    assert budget.left_out().startswith("… 2 more lines (4 bytes) were not kept")


@pytest.fixture
def build(team, owner, dummy_backend):
    service = create_service(team=team, name="hello", created_by=owner)
    return Build.objects.create(service=service, number=1)


def test_a_builds_log_is_capped_across_its_steps_and_says_so(build, settings):
    settings.BUILD_LOG_MAX_LINES = 5
    with BuildLog(build.id) as fetching:
        for number in range(3):
            fetching.write(f"fetch {number}")
    with BuildLog(build.id) as building:  # the next step, a new writer: the same budget
        for number in range(20):
            building.write(f"pip says {number}")
        building.write("✗ the build failed", keep=True)
    with BuildLog(build.id) as later:
        later.write("one more")

    lines = list(BuildLogLine.objects.filter(build=build).values_list("text", flat=True))
    assert lines[:5] == ["fetch 0", "fetch 1", "fetch 2", "pip says 0", "pip says 1"]
    assert "✗ the build failed" in lines
    said = [line for line in lines if "were not kept" in line]
    assert said == [lines[-1]] and said[0].startswith("… 19 more lines")  # 18 from building, 1 later


def test_a_long_line_is_cut_in_the_store(build):
    with BuildLog(build.id) as log:
        log.write("y" * 10_000)
    stored = BuildLogLine.objects.get(build=build).text
    assert stored.startswith("y" * MAX_LINE_CHARS) and stored.endswith("6,000 more characters not kept]")
