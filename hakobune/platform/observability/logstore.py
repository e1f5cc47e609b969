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


def _filtered(service_id: int, wanted: LogFilter):
    lines = LogLine.objects.filter(service_id=service_id)
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


def tail(service_id: int, wanted: LogFilter, *, limit: int | None = None, before: int | None = None) -> list[LogLine]:
    """The last `limit` matching lines (before the line with id `before`,
    for the page before), oldest first."""
    lines = _filtered(service_id, wanted)
    if before is not None:
        lines = lines.filter(id__lt=before)
    return list(reversed(lines.order_by("-id")[: page_size(limit)]))


def after(service_id: int, wanted: LogFilter, last_id: int, *, limit: int | None = None) -> list[LogLine]:
    """The matching lines stored after the line with id `last_id`, oldest
    first, at most `limit` (for following)."""
    return list(_filtered(service_id, wanted).filter(id__gt=last_id).order_by("id")[: page_size(limit)])


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
