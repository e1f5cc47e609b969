"""Reading the stored runtime logs (portal, API, CLI) and keeping them within
their bounds (the housekeeping's prune). The collector writes them
(logcollector.py); they live in the "logs" database."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from .models import LogCursor, LogLine

logger = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr", "platform")


@dataclass
class LogFilter:
    """What a reader asks for; every part optional."""

    text: str = ""
    stream: str = ""
    process: str = ""
    release: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def narrows(self) -> bool:
        return bool(self.text or self.stream or self.process or self.release is not None
                    or self.since is not None or self.until is not None)


@dataclass
class Page:
    """Lines of one service, oldest first, and where reading older ones goes on."""

    lines: list[LogLine]
    # Ask for the lines before this id for more (None: nothing older is left to read).
    before: int | None = None
    # A filter read only LOGS_SEARCH_LINES lines: the time of the oldest one it read.
    searched_back_to: datetime | None = None


def _filtered(lines, wanted: LogFilter):
    if wanted.text:
        lines = lines.filter(text__icontains=wanted.text)
    if wanted.stream:
        lines = lines.filter(stream=wanted.stream)
    if wanted.process:
        lines = lines.filter(process=wanted.process)
    if wanted.release is not None:
        lines = lines.filter(release=wanted.release)
    if wanted.since is not None:
        lines = lines.filter(timestamp__gte=wanted.since)
    if wanted.until is not None:
        lines = lines.filter(timestamp__lte=wanted.until)
    return lines


def page_size(asked: int | None) -> int:
    """A page holds at most LOGS_PAGE_MAX lines, whatever is asked."""
    return max(1, min(asked or 200, settings.LOGS_PAGE_MAX))


def search_lines() -> int:
    return max(1, settings.LOGS_SEARCH_LINES)


def tail(service_id: int, wanted: LogFilter, *, limit: int | None = None, before: int | None = None) -> Page:
    """The last `limit` matching lines (before the line with id `before`,
    for the page before), oldest first.

    Without a filter that is the newest entries of the (service_id, id)
    index. A filter reads at most the newest LOGS_SEARCH_LINES lines (before
    `before`): no index finds a piece of text, and a filter that matches
    little would otherwise read every line the service has stored. When
    that leaves older lines unread, the page says how far back it read and
    where to go on (`before`, `searched_back_to`)."""
    size = page_size(limit)
    lines = LogLine.objects.filter(service_id=service_id)
    if before is not None:
        lines = lines.filter(id__lt=before)
    edge = None
    if wanted.narrows():
        edge = _oldest_searched(lines)
        lines = _filtered(lines, wanted)
        if edge is not None:
            lines = lines.filter(id__gte=edge[0])
    found = list(reversed(lines.order_by("-id")[:size]))
    if len(found) >= size:
        return Page(found, before=found[0].id)
    if edge is None or (wanted.since is not None and edge[1] < wanted.since):
        return Page(found)
    return Page(found, before=edge[0], searched_back_to=edge[1])


def _oldest_searched(lines) -> tuple[int, datetime] | None:
    """The id and time of the oldest line a filtered read takes, when older
    lines are left unread: the LOGS_SEARCH_LINES-th newest. Skipping that
    many entries of the (service_id, id) index reads no table row, so it
    costs the same whatever the filter."""
    window = search_lines()
    # The ids alone: with the time asked too, SQLite would take the
    # (service_id, timestamp) index, which holds both, and sort all of it.
    edge = list(lines.order_by("-id").values_list("id", flat=True)[window - 1:window + 1])
    if len(edge) < 2:
        return None
    return edge[0], LogLine.objects.values_list("timestamp", flat=True).get(id=edge[0])


def after(service_id: int, wanted: LogFilter, last_id: int, *, limit: int | None = None) -> tuple[list[LogLine], int]:
    """The matching lines stored after the line with id `last_id`, oldest
    first, at most `limit` (for following); and the id to follow on from:
    the last line read, matching or not, so that a filter matching nothing
    moves on too and no line is read twice. A filter reads at most
    LOGS_SEARCH_LINES lines a call."""
    size = page_size(limit)
    lines = LogLine.objects.filter(service_id=service_id, id__gt=last_id).order_by("id")
    if not wanted.narrows():
        found = list(lines[:size])
        return found, found[-1].id if found else last_id
    window = search_lines()
    # Where this read stops: the LOGS_SEARCH_LINES-th line after `last_id`,
    # or the newest line now (read before the lines, so that one stored
    # meanwhile is left for the next call, not skipped).
    nth = list(lines.values_list("id", flat=True)[window - 1:window])
    end = max(nth[0] if nth else newest_id(service_id), last_id)
    found = list(_filtered(lines.filter(id__lte=end), wanted)[:size])
    return found, found[-1].id if len(found) >= size else end


def newest_id(service_id: int) -> int:
    """The id of the service's newest stored line (0: none yet)."""
    return LogLine.objects.filter(service_id=service_id).order_by("-id").values_list("id", flat=True).first() or 0


def prune(now: datetime | None = None) -> int:
    """Deletes the lines older than LOGS_RETENTION_HOURS, then, for each team
    whose lines take more than LOGS_TEAM_MAX_MB, its oldest ones until they
    fit; returns the lines deleted."""
    now = now or timezone.now()
    window = now - timedelta(hours=settings.LOGS_RETENTION_HOURS)
    deleted, _ = LogLine.objects.filter(timestamp__lt=window).delete()
    # The positions of containers that printed nothing for as long are of
    # containers long gone. (One stopped that long and started again is read
    # from its start: its lines older than the window go at the next prune.)
    LogCursor.objects.filter(source__startswith="container:", updated_at__lt=window).delete()
    cap = settings.LOGS_TEAM_MAX_MB * 1024 * 1024
    for row in LogLine.objects.values("team_id").annotate(total=Sum("size")).order_by():
        if row["total"] > cap:
            deleted += _shrink(row["team_id"], row["total"] - cap)
    if deleted:
        logger.info("%s runtime log lines pruned", deleted)
    return deleted


def _shrink(team_id: int, excess: int) -> int:
    """Deletes the team's oldest lines, in chunks, until `excess` bytes went."""
    deleted = 0
    while excess > 0:
        chunk = list(LogLine.objects.filter(team_id=team_id).order_by("id").values_list("id", "size")[:5000])
        if not chunk:
            break
        ids, freed = [], 0
        for line_id, size in chunk:
            ids.append(line_id)
            freed += size
            if freed >= excess:
                break
        LogLine.objects.filter(team_id=team_id, id__lte=ids[-1]).delete()
        deleted += len(ids)
        excess -= freed
    return deleted


def team_bytes(team_id: int) -> int:
    return LogLine.objects.filter(team_id=team_id).aggregate(total=Sum("size"))["total"] or 0
