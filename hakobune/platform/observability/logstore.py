"""Storing the runtime logs (for the collector, logcollector.py), reading
them (portal, API, CLI) and keeping them within their bounds (the
housekeeping's prune). They live in the "logs" database."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import cache, lru_cache

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Sum
from django.utils import timezone

from . import bulk
from .models import LogCursor, LogLine

logger = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr", "platform")
LOGS_DB = "logs"


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
    # The ids alone (the index holds no time); the edge's time is one row.
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


# -- storing (the collector) --------------------------------------------------------

LINE_FIELDS = ("service_id", "team_id", "timestamp", "instance", "process", "release", "stream", "text", "size",
               "dropped")


def store(lines: list[tuple], positions: dict[str, int]) -> None:
    """Inserts `lines`, each (service_id, team_id, timestamp in nanoseconds,
    instance, process, release, stream, text, dropped), and sets the
    sources' `positions` (LogCursor), in one transaction, with one statement
    run for all the lines and one for all the positions."""
    connection = connections[LOGS_DB]
    stamp = stamper(connection)
    rows = [
        (service_id, team_id, stamp(ns), instance, process, release, stream, text,
         len(text) if text.isascii() else len(text.encode("utf-8")), dropped)
        for service_id, team_id, ns, instance, process, release, stream, text, dropped in lines
    ]
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(using=LOGS_DB), connection.cursor() as cursor:
        if rows:
            cursor.executemany(bulk.insert_statement(LOGS_DB, LogLine, LINE_FIELDS), rows)
        if positions:
            cursor.executemany(_upsert_position(), [(source, ns, now) for source, ns in positions.items()])


def tune_writer(sender, connection, **kwargs) -> None:
    """The collector's connection to a SQLite log store (connection_created):
    a page cache that holds the index pages every flush touches (one per
    service in each index by service), and a checkpoint per 40 MB of
    write-ahead log rather than per 4 MB, so that a page written at every
    flush is copied into the database file once per checkpoint, not at each."""
    if connection.alias == LOGS_DB and connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size = -16384")  # KiB
            cursor.execute("PRAGMA wal_autocheckpoint = 10000")  # pages


EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def _from_ns(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)


def stamper(connection):
    """How a time in nanoseconds is given to the database: as Django gives
    a DateTimeField's value (adapt_datetimefield_value)."""
    if connection.vendor == "sqlite":
        return _sqlite_stamp
    adapt = connection.ops.adapt_datetimefield_value
    return lambda ns: adapt(_from_ns(ns))


def _sqlite_stamp(ns: int) -> str:
    """A time as Django stores it in SQLite (adapt_datetimefield_value: the
    naive UTC time's str()), the seconds formatted once per second: at
    thousands of lines a second, Django's own way costs as much as the
    insert."""
    seconds, micro = divmod(ns // 1000, 1_000_000)
    text = _second_text(seconds)
    return f"{text}.{micro:06d}" if micro else text


@lru_cache(maxsize=16)
def _second_text(seconds: int) -> str:
    return (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


@cache
def _upsert_position() -> str:
    """The insert-or-update of a source's position (SQLite and PostgreSQL
    both say ON CONFLICT … DO UPDATE)."""
    quote = connections[LOGS_DB].ops.quote_name
    source, position, updated_at = (quote(LogCursor._meta.get_field(name).column)
                                    for name in ("source", "position", "updated_at"))
    return (f"INSERT INTO {quote(LogCursor._meta.db_table)} ({source}, {position}, {updated_at}) "
            f"VALUES (%s, %s, %s) ON CONFLICT ({source}) DO UPDATE "
            f"SET {position} = excluded.{position}, {updated_at} = excluded.{updated_at}")
