"""Writing a build's log: lines are buffered briefly and inserted in batches,
so a chatty build does not make one write per line; each line is cut at
MAX_LINE_CHARS, and a build keeps at most BUILD_LOG_MAX_LINES lines and
BUILD_LOG_MAX_BYTES bytes of what it printed (the rest is counted and said).
The platform's own lines (the outcome, the reason, the app's last lines)
are always kept."""

import re
import time

from django.conf import settings
from django.db.models import Count, Sum
from django.db.models.functions import Length

from hakobune.worker.logcap import MAX_LINE_CHARS, LogBudget, cut

from .models import BuildLogLine

__all__ = ["MAX_LINE_CHARS", "BuildLog", "BuildStopped"]

_LEFT_OUT = re.compile(r"^… (?P<lines>[\d,]+) more lines \((?P<bytes>[\d,]+) bytes\)")


class BuildStopped(Exception):
    """The build was cancelled or superseded while its step wrote its log:
    the step stops where it is (see BuildLog's `stop_check`)."""


class BuildLog:
    def __init__(self, build_id: int, *, flush_every: float = 0.25, batch: int = 100, stop_check=None,
                 check_every: float = 1.0):
        self.build_id = build_id
        # Asked, at most every `check_every` s, whether the build was stopped;
        # a step that is still printing then ends with BuildStopped.
        self.stop_check = stop_check
        self.check_every = check_every
        self._last_check = time.monotonic()
        self.flush_every = flush_every
        self.batch = batch
        self.pending: list[str] = []
        self.last_flush = time.monotonic()
        self._budget = None
        self._reported_dropped = 0

    @property
    def budget(self) -> LogBudget:
        """What the build may still keep: its steps share one budget, counted
        from the lines already stored."""
        if self._budget is None:
            stored = BuildLogLine.objects.filter(build_id=self.build_id).aggregate(
                lines=Count("id"), chars=Sum(Length("text"))
            )
            self._budget = LogBudget(settings.BUILD_LOG_MAX_LINES, settings.BUILD_LOG_MAX_BYTES)
            self._budget.lines = stored["lines"] or 0
            self._budget.bytes = (stored["chars"] or 0) + self._budget.lines
            said = self._left_out_line()
            if said is not None:  # what earlier steps left out, counted on
                found = _LEFT_OUT.match(said.text)
                if found:
                    self._budget.dropped_lines = self._reported_dropped = int(found["lines"].replace(",", ""))
                    self._budget.dropped_bytes = int(found["bytes"].replace(",", ""))
        return self._budget

    def _left_out_line(self):
        return BuildLogLine.objects.filter(
            build_id=self.build_id, text__startswith="… ", text__contains="were not kept: a log keeps"
        ).order_by("-id").first()

    def __call__(self, text: str) -> None:
        self.write(text)

    def write(self, text: str, *, keep: bool = False) -> None:
        """Adds the text's lines; `keep`: always, past the budget (the
        platform's own words)."""
        for line in str(text).splitlines() or [""]:
            line = cut(line)
            if keep or self.budget.admit(line):
                self.pending.append(line)
        if len(self.pending) >= self.batch or time.monotonic() - self.last_flush >= self.flush_every:
            self.flush()
        if self.stop_check is not None and time.monotonic() - self._last_check >= self.check_every:
            self._last_check = time.monotonic()
            if self.stop_check():
                raise BuildStopped(self.build_id)

    def flush(self) -> None:
        if self._budget is not None and self._budget.dropped_lines > self._reported_dropped:
            # Said once per step, with the count so far.
            self._reported_dropped = self._budget.dropped_lines
            earlier = self._left_out_line()
            if earlier is not None:
                earlier.delete()
            self.pending.append(self._budget.left_out())
        if self.pending:
            BuildLogLine.objects.bulk_create(BuildLogLine(build_id=self.build_id, text=line) for line in self.pending)
            self.pending = []
        self.last_flush = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.flush()
