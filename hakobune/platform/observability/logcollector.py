"""The log collector: one long-running process (`manage.py collect_logs`,
started by scripts/start.sh beside the workers) that follows the output of
every Hakobune container of the local runtime as it is written, and stores
each line in the log database with its service, instance, process type,
release and stream; and that reads the router's access log into request
metrics for each service, once per METRICS_SECONDS.

- One loop reads every container's log file (the engine's json-file log,
  runtime/logfollow.py LogFile) every FLUSH_SECONDS, taking all the lines
  each has new, and stores them in one transaction. A container whose file
  cannot be read here (another log driver, an engine on another host) is
  followed through the engine's logs stream instead, by a thread of its own
  that reads at most once per FLUSH_SECONDS (runtime/logfollow.py follow).
- Containers that start or stop come from the engine's events (and a look at
  the running ones every SWEEP_SECONDS, for events missed while the engine
  was away); a stopped container's file is read for END_SECONDS more.
- Each source's position (the last stored line's timestamp, in nanoseconds)
  is stored in the same transaction as its lines (LogCursor), so a restarted
  collector resumes after the last stored line and repeats none.
- An instance that exits without Hakobune stopping it (a crash, an OOM
  kill: runtime/exits.py) is recorded as an event of its service
  (observability/events.py), once per exit, from the same events stream.
- Per service, at most LOGS_RATE_PER_SECOND lines a second are kept (a token
  bucket holding LOGS_BURST); the rest are dropped and counted, and said in one
  line ("12,345 lines dropped in 10 s") per LOGS_DROP_WINDOW_SECONDS. Lines
  are cut at LOGS_MAX_LINE_BYTES; the values of the service's environment
  variables are masked before anything is stored."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone

import docker
import requests
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.db.backends.signals import connection_created
from redis.exceptions import RedisError

from hakobune.platform.crypto import decrypt
from hakobune.platform.locks import redis_client
from hakobune.platform.queue import this_host
from hakobune.platform.services.models import EnvVar, Release, Service
from hakobune.runtime.docker_local import LABEL_MANAGED, LABEL_PROCESS, LABEL_RELEASE, LABEL_SERVICE, LABEL_TEAM
from hakobune.runtime.exits import KILL_WINDOW_NS, ExitWatch, container_events
from hakobune.runtime.logfollow import LogFile, RawLine, follow

from . import logstore
from .events import record_instance_exit
from .models import LogCursor, MetricPoint

logger = logging.getLogger(__name__)

LOGS_DB = logstore.LOGS_DB
FLUSH_SECONDS = 1.0
SWEEP_SECONDS = 30
REPORT_SECONDS = 5
# A stopped container's file is read this much longer: the engine may write
# its last lines after it says the container stopped.
END_SECONDS = 2.0
# Lines stored in one transaction at most (more wait for the next).
FLUSH_MAX = 5000
MASK = "••••••"
# The position of the instance exits recorded from the engine's events; a
# collector restarted within EXITS_RESUME_NS reads the exits it missed from
# there (as far as the engine's last 256 events go back).
EXITS_SOURCE = "engine:exits"
EXITS_RESUME_NS = 3600 * 1_000_000_000
# Values shorter than this are not masked: "1", "true" and "8080" are in
# too many lines to hide, and are not secrets.
MASK_MIN_LENGTH = 6


def health_key() -> str:
    """The Redis hash where each host's collector says how it is doing (report())."""
    return f"hakobune:{settings.CELERY_TASK_DEFAULT_QUEUE}:logs:collectors"


def local_instance() -> str:
    """The instance label of this platform's containers (HAKOBUNE_INSTANCE)."""
    return settings.RUNTIME_BACKENDS.get("local", {}).get("OPTIONS", {}).get("instance", "hakobune")


@dataclass
class Origin:
    """Who printed a container's lines, read once when it is followed."""

    service_id: int
    team_id: int
    instance: str
    process: str
    release: int
    secrets: list[str] = field(default_factory=list)
    finder: re.Pattern | None = field(init=False, default=None, repr=False)

    def __post_init__(self):
        # Longest first, so a value containing another is masked whole.
        self.secrets = sorted(self.secrets, key=len, reverse=True)
        self.finder = finder_of(self.secrets)

    def mask(self, text: str) -> str:
        if self.finder is None or self.finder.search(text) is None:
            return text  # nearly every line
        return mask(text, self.secrets)


class Limiter:
    """One service's token bucket and its count of dropped lines."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at: float | None = None
        self.dropped = 0
        self.first_drop = 0.0
        self.lock = threading.Lock()

    def take(self, at: float | None = None) -> bool:
        """Whether a line printed at `at` (seconds; default: now) is kept.
        The bucket fills by the lines' own times, so a collector catching up
        on a backlog keeps what the service was allowed when it printed."""
        with self.lock:
            now = time.monotonic() if at is None else at
            if self.at is None:
                self.at = now
            elif now > self.at:
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
                self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            if not self.dropped:
                self.first_drop = time.monotonic()
            self.dropped += 1
            return False

    def keep(self, lines: list[RawLine]) -> list[RawLine]:
        """The lines of one read that are kept (take() for each, under one
        acquisition of the lock)."""
        with self.lock:
            kept = []
            tokens, at, rate, burst = self.tokens, self.at, self.rate, self.burst
            for line in lines:
                now = line.ns / 1_000_000_000
                if at is None:
                    at = now
                elif now > at:
                    tokens = min(burst, tokens + (now - at) * rate)
                    at = now
                if tokens >= 1:
                    tokens -= 1
                    kept.append(line)
                    continue
                if not self.dropped:
                    self.first_drop = time.monotonic()
                self.dropped += 1
            self.tokens, self.at = tokens, at
            return kept

    def due(self, window: float, *, now: float | None = None, force: bool = False) -> tuple[int, float]:
        """The dropped count and its span in seconds once the window is over
        (or at once with `force`), resetting it; else (0, 0)."""
        with self.lock:
            now = time.monotonic() if now is None else now
            if not self.dropped or (not force and now - self.first_drop < window):
                return 0, 0.0
            dropped, span = self.dropped, max(now - self.first_drop, 1.0)
            self.dropped = 0
            return dropped, span


def drop_text(dropped: int, seconds: float) -> str:
    return (f"{dropped:,} line{'s' if dropped != 1 else ''} dropped in {round(seconds):,} s: the service printed "
            f"more than {settings.LOGS_RATE_PER_SECOND:,} lines a second")


def cut(text: str, limit: int, left_out: int = 0) -> str:
    """`text` in at most `limit` bytes, saying how many more it had
    (`left_out`: bytes already left out before)."""
    if not left_out and len(text) * 4 <= limit:  # 4 bytes a character at most
        return text
    encoded = text.encode("utf-8")
    if len(encoded) <= limit and not left_out:
        return text
    more = max(len(encoded) - limit, 0) + left_out
    return encoded[:limit].decode("utf-8", "ignore") + f" … ({more:,} more bytes cut)"


def finder_of(secrets: list[str]) -> re.Pattern | None:
    """One pattern finding any of `secrets`: one search tells a line holding
    none (nearly all of them), however many values a service has."""
    return re.compile("|".join(re.escape(value) for value in secrets)) if secrets else None


def mask(text: str, secrets: list[str]) -> str:
    """`text` with each of `secrets` (longest first) replaced by MASK."""
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _now() -> datetime:
    return datetime.now(tz=dt_timezone.utc)


@dataclass
class FileFollower:
    """A container followed through its log file, by the collector's loop."""

    log: LogFile
    origin: Origin
    limiter: Limiter
    # When the container stopped: the file is read until then, and closed.
    ending_at: float | None = None


class Collector:
    def __init__(self, client: docker.DockerClient | None = None, *, access_log: str | None = None,
                 read_files: bool = True, instance: str | None = None):
        """`read_files`: read the engine's log files where this process can
        (else every container is followed through the engine); `instance`:
        the containers' instance label (default: this platform's)."""
        self.client = client or docker.DockerClient(
            base_url=settings.RUNTIME_BACKENDS["local"]["OPTIONS"].get("docker_url", "unix:///var/run/docker.sock"),
            timeout=None,
        )
        self.labels = [f"{LABEL_MANAGED}={instance or local_instance()}"]
        self.access_log = settings.ROUTER_ACCESS_LOG if access_log is None else access_log
        self.read_files = read_files
        self.stopping = threading.Event()
        # Lines of followers through the engine (their threads put them here).
        self.lines: queue.SimpleQueue = queue.SimpleQueue()
        # Rows of lines read from files, by container, ready to store (the
        # loop's thread alone reads the files and stores, so no queue).
        self.ready: dict[str, list[tuple]] = {}
        # (action, container id) from the events stream, for the loop.
        self.seen: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.files: dict[str, FileFollower] = {}  # only the loop's thread uses it
        self.followers: dict[str, threading.Thread] = {}  # through the engine
        self.again: set[str] = set()
        self.positions: dict[str, int] = {}
        self.limiters: dict[int, Limiter] = {}
        self.teams: dict[int, int] = {}
        self.events = None
        self.stored = 0
        self.access_offset: int | None = None
        self.lag = self.flush_seconds = 0.0
        self.stored_positions: dict[str, int] = {}
        self.unstored: tuple[list[tuple], dict[str, int]] = ([], {})
        self.said_unreadable = False

    # -- following containers --------------------------------------------------------

    def watch(self, container_id: str) -> None:
        """Follows the container unless it is followed already (then a
        follower through the engine looks once more when its stream ends;
        a file goes on being read). Called by the loop's thread."""
        follower = self.files.get(container_id)
        if follower is not None:
            follower.ending_at = None  # started again
            return
        with self.lock:
            if container_id in self.followers:
                self.again.add(container_id)
                return
        try:
            container = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return  # removed since: what it printed was read, or is not there to read
        origin = self._origin(container)
        if origin is None:
            return
        log = self._log_file(container, self._position(container_id))
        if log is not None:
            self.files[container_id] = FileFollower(log, origin, self._limiter(origin))
            return
        thread = threading.Thread(target=self._follow, args=(container_id,), daemon=True,
                                  name=f"logs-{container_id[:12]}")
        with self.lock:
            self.followers[container_id] = thread
        thread.start()

    def _log_file(self, container, since: int) -> LogFile | None:
        """The container's json-file log, read from `since` on, if this
        process can read it."""
        path = container.attrs.get("LogPath") or ""
        driver = ((container.attrs.get("HostConfig") or {}).get("LogConfig") or {}).get("Type")
        if not self.read_files or driver != "json-file" or not path:
            return None
        try:
            return LogFile(path, since)
        except OSError as exc:
            if not self.said_unreadable:
                self.said_unreadable = True
                logger.warning("cannot read the engine's log files here (%s); following containers through the "
                               "engine's logs stream, which costs more CPU", exc)
            return None

    def _origin(self, container) -> Origin | None:
        labels = container.labels
        service = Service.objects.filter(team__name=labels.get(LABEL_TEAM, ""), name=labels.get(LABEL_SERVICE, "")).first()
        if service is None:
            return None
        number = Release.objects.filter(id=labels.get(LABEL_RELEASE) or 0).values_list("number", flat=True).first()
        secrets = []
        for stored in EnvVar.objects.filter(service=service).exclude(value_encrypted="").values_list("value_encrypted",
                                                                                                   flat=True):
            try:
                value = decrypt(stored)
            except ValueError:
                continue
            if len(value) >= MASK_MIN_LENGTH:
                secrets.append(value)
        return Origin(service.id, service.team_id, container.name, labels.get(LABEL_PROCESS) or "web", number or 0,
                      secrets)

    def _position(self, container_id: str) -> int:
        stored = LogCursor.objects.filter(source=f"container:{container_id}").values_list("position", flat=True).first()
        return max(stored or 0, self.positions.get(container_id, 0))

    def _keep(self, container_id: str, origin: Origin, limiter: Limiter, lines: list[RawLine]) -> None:
        """Queues what the service's rate limit keeps of `lines`, cut and
        masked, then notes the source's position."""
        if not lines:
            return
        limit = settings.LOGS_MAX_LINE_BYTES
        for line in lines:
            if limiter.take(line.ns / 1_000_000_000):
                self.lines.put((container_id, origin, line, origin.mask(cut(line.text, limit, line.left_out))))
        # A kept line is queued before its position is noted, so a position
        # flush() reads never runs ahead of a line it has not taken yet (see
        # _has_waiting).
        self.positions[container_id] = max(self.positions.get(container_id, 0), max(line.ns for line in lines))

    def _keep_rows(self, container_id: str, origin: Origin, limiter: Limiter, lines: list[RawLine]) -> None:
        """What the service's rate limit keeps of one file read's `lines`, cut
        and masked, as rows ready to store; then the file's position."""
        kept = limiter.keep(lines)
        if kept:
            limit = settings.LOGS_MAX_LINE_BYTES
            service_id, team_id, instance, process, release = (origin.service_id, origin.team_id, origin.instance,
                                                                origin.process, origin.release)
            masked = origin.mask
            rows = self.ready.setdefault(container_id, [])
            for line in kept:
                text = line.text
                if line.left_out or len(text) * 4 > limit:
                    text = cut(text, limit, line.left_out)
                rows.append((service_id, team_id, line.ns, instance, process, release, line.stream, masked(text), 0))
        newest = max(line.ns for line in lines)
        if newest > self.positions.get(container_id, 0):
            self.positions[container_id] = newest

    def read_files_once(self) -> bool:
        """Reads what each followed file has new; returns whether one had
        more than one read's worth (the loop then reads again at once)."""
        more = False
        now = time.monotonic()
        for container_id, follower in list(self.files.items()):
            try:
                lines = follower.log.read()
                if lines:
                    self._keep_rows(container_id, follower.origin, follower.limiter, lines)
            except Exception:  # noqa: BLE001 - one container's trouble never stops the others
                logger.exception("reading the log of container %s failed; it is followed again at the next sweep",
                                 container_id)
                self._unfollow(container_id)
                continue
            more = more or follower.log.more
            if follower.ending_at is not None and now >= follower.ending_at and not follower.log.more:
                self._unfollow(container_id)
        return more

    def _unfollow(self, container_id: str) -> None:
        follower = self.files.pop(container_id, None)
        if follower is not None:
            follower.log.close()

    def _ending(self, container_id: str) -> None:
        follower = self.files.get(container_id)
        if follower is not None and follower.ending_at is None:
            follower.ending_at = time.monotonic() + END_SECONDS

    def _follow(self, container_id: str) -> None:
        """A follower through the engine (its own thread)."""
        try:
            while not self.stopping.is_set():
                try:
                    container = self.client.containers.get(container_id)
                    origin = self._origin(container)
                    since = self._position(container_id)
                finally:
                    close_old_connections()
                if origin is None:
                    break
                limiter = self._limiter(origin)
                for line in follow(self.client, container_id, since, pause=FLUSH_SECONDS):
                    self._keep(container_id, origin, limiter, [line])
                    if self.stopping.is_set():
                        return
                with self.lock:
                    if container_id not in self.again:
                        del self.followers[container_id]
                        return
                    self.again.discard(container_id)
        except docker.errors.NotFound:
            pass  # removed: what it printed is stored
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: being removed, as above
                logger.warning("following container %s failed: %s; it is followed again at the next sweep",
                               container_id, exc)
        except Exception:  # noqa: BLE001 - one container's trouble never stops the others
            logger.exception("following container %s failed; it is followed again at the next sweep", container_id)
        with self.lock:
            self.followers.pop(container_id, None)
            self.again.discard(container_id)

    def _limiter(self, origin: Origin) -> Limiter:
        with self.lock:
            self.teams[origin.service_id] = origin.team_id
            if origin.service_id not in self.limiters:
                self.limiters[origin.service_id] = Limiter(settings.LOGS_RATE_PER_SECOND, settings.LOGS_BURST)
            return self.limiters[origin.service_id]

    def sweep(self) -> None:
        """Follows every running container of this platform not yet followed,
        and ends the files of those no longer running."""
        running = set()
        for container in self.client.containers.list(filters={"label": self.labels}, sparse=True):
            if (container.attrs.get("Labels") or {}).get(LABEL_SERVICE):
                running.add(container.id)
                with self.lock:
                    known = container.id in self.followers or container.id in self.files
                if not known:
                    self._try_to_watch(container.id)
        for container_id in list(self.files):
            if container_id not in running:
                self._ending(container_id)

    def _events(self) -> None:
        """Hands the loop the containers that start and stop, and the exits of
        instances that Hakobune did not stop (crashes, OOM kills) to the
        platform's events, from where the last one recorded left off (its own
        thread)."""
        watch = ExitWatch()
        while not self.stopping.is_set():
            try:
                done = self._exits_position()
                # From a little before the last exit recorded, so that the
                # kill of a stop just before it is seen again too.
                since = done - KILL_WINDOW_NS if done else None
                self.events = container_events(self.client, self.labels, since)
                for event in self.events:
                    if self.stopping.is_set():
                        return
                    attributes = (event.get("Actor") or {}).get("Attributes") or {}
                    action = event.get("Action")
                    if action in ("start", "die") and attributes.get(LABEL_SERVICE) and event.get("id"):
                        self.seen.put((action, event["id"]))
                    exit = watch.see(event)
                    if exit is not None and exit.at_ns > done:
                        record_instance_exit(exit)
                        done = exit.at_ns
                        self._note_exits_position(done)
                        close_old_connections()  # this thread's, which a database restart may have broken
            except Exception as exc:  # noqa: BLE001 - the engine went away: look again
                if self.stopping.is_set():
                    return
                logger.warning("the engine's events stream ended (%s); listening again", exc)
                close_old_connections()
                time.sleep(1)

    def _exits_position(self) -> int:
        """The engine's time of the last instance exit recorded (ns), if recent;
        0 (from now on) when it cannot be read: following containers comes first."""
        try:
            stored = LogCursor.objects.filter(source=EXITS_SOURCE).values_list("position", flat=True).first() or 0
        except DatabaseError as exc:
            logger.warning("could not read where the instance exits were left: %s", exc)
            return 0
        return stored if time.time_ns() - stored < EXITS_RESUME_NS else 0

    def _note_exits_position(self, ns: int) -> None:
        try:
            if not LogCursor.objects.filter(source=EXITS_SOURCE).update(position=ns):
                LogCursor.objects.create(source=EXITS_SOURCE, position=ns)
        except DatabaseError as exc:
            logger.warning("could not note where the instance exits are: %s", exc)

    def _handle_events(self) -> None:
        while True:
            try:
                action, container_id = self.seen.get_nowait()
            except queue.Empty:
                return
            if action == "die":
                self._ending(container_id)
            else:
                self._try_to_watch(container_id)

    def _try_to_watch(self, container_id: str) -> None:
        try:
            self.watch(container_id)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            logger.warning("could not follow container %s: %s; it is followed at the next sweep", container_id, exc)
        except Exception:  # noqa: BLE001 - the platform's database away for a moment: the next sweep looks again
            logger.exception("could not follow container %s; it is followed at the next sweep", container_id)

    # -- storing ---------------------------------------------------------------------

    def flush(self, *, force_drops: bool = False) -> int:
        """Stores the lines waiting, with their sources' positions, in one
        transaction; then says the drops whose window is over. What could not
        be stored (the database away for a moment) is tried again first."""
        rows, positions = self.unstored
        self.unstored = ([], {})
        started = time.monotonic()
        oldest_ns = None
        try:
            while len(rows) < FLUSH_MAX:
                container_id, origin, line, text = self.lines.get_nowait()
                rows.append((origin.service_id, origin.team_id, line.ns, origin.instance, origin.process,
                             origin.release, line.stream, text, 0))
                if line.ns > positions.get(container_id, 0):
                    positions[container_id] = line.ns
                oldest_ns = line.ns if oldest_ns is None else min(oldest_ns, line.ns)
        except queue.Empty:
            pass
        # The lines read from files, each container's whole (so its position
        # is that of its last line read).
        for container_id in list(self.ready):
            if len(rows) >= FLUSH_MAX:
                break
            batch = self.ready.pop(container_id)
            rows += batch
            oldest_ns = batch[0][2] if oldest_ns is None else min(oldest_ns, batch[0][2])
        # Each source's position moves to its last line read, kept or
        # dropped (so a restart does not read and count dropped lines
        # again), once none of its kept lines is still waiting.
        for container_id, ns in list(self.positions.items()):
            if ns > positions.get(container_id, 0):
                if container_id not in self.ready and not self._has_waiting(container_id):
                    positions[container_id] = ns
        rows += self._drop_rows(force=force_drops)
        # A position already stored is not stored again.
        positions = {container_id: ns for container_id, ns in positions.items()
                     if self.stored_positions.get(container_id) != ns}
        if not rows and not positions:
            return 0
        try:
            logstore.store(rows, {f"container:{container_id}": ns for container_id, ns in positions.items()})
        except Exception:
            self.unstored = (rows, positions)
            raise
        self.stored_positions.update(positions)
        self.stored += len(rows)
        # How far behind the output the store was: the oldest line of this
        # flush was printed this long ago. The worst of each report's period.
        if oldest_ns:
            self.lag = max(self.lag, time.time() - oldest_ns / 1_000_000_000)
        self.flush_seconds = max(self.flush_seconds, time.monotonic() - started)
        return len(rows)

    def _has_waiting(self, container_id: str) -> bool:
        # A position ahead of lines still queued would skip them after a
        # restart. The position was read after its line was queued; with the
        # queue empty now, that line was taken by this flush. A file's lines
        # never go through the queue.
        return container_id not in self.files and not self.lines.empty()

    def _drop_rows(self, *, force: bool = False) -> list[tuple]:
        rows = []
        with self.lock:
            limiters = list(self.limiters.items())
        for service_id, limiter in limiters:
            dropped, span = limiter.due(settings.LOGS_DROP_WINDOW_SECONDS, force=force)
            if dropped:
                rows.append((service_id, self.teams.get(service_id, 0), time.time_ns(), "", "", 0,
                             "platform", drop_text(dropped, span), dropped))
        return rows

    # -- request metrics from the router's access log ----------------------------------

    def read_access_log(self) -> int:
        """Reads the router's access log from where the last call stopped and
        stores, per service, the period's request count by status class,
        latency percentiles and bytes sent (MetricPoint, as Cloud Run's);
        returns the requests counted."""
        from hakobune.platform.services.scaling import service_for_hostname

        path = self.access_log
        if not path:
            return 0
        source = f"access:{path}"
        if not os.path.exists(path):
            # Not written yet: when it is, every line in it is new.
            LogCursor.objects.get_or_create(source=source, defaults={"position": 0})
            self.access_offset = 0
            return 0
        size = os.path.getsize(path)
        stored = LogCursor.objects.filter(source=source).values_list("position", flat=True).first()
        # The first look starts at the end: requests from before the
        # collector's first day are not counted in today's period. (A
        # position lost since, while this process has its own, goes on from
        # this process's.)
        if stored is None:
            stored = self.access_offset if self.access_offset is not None else size
        offset = stored
        if size < offset:  # rotated
            offset = 0
        by_host: dict[str, list] = defaultdict(list)
        with open(path, "rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # still being written: read it next time
                offset += len(raw)
                try:
                    entry = json.loads(raw)
                    host = entry["request"]["host"].rsplit(":", 1)[0].lower()
                    by_host[host].append((int(entry.get("status") or 0), float(entry.get("duration") or 0.0),
                                          int(entry.get("size") or 0)))
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
        points, counted = [], 0
        stamp = _now()
        by_service: dict[int, list] = defaultdict(list)
        for host, requests in by_host.items():
            service = service_for_hostname(host)
            if service is not None:
                by_service[service.id] += requests
        for service_id, requests in by_service.items():
            counted += len(requests)
            points += request_points(service_id, requests, stamp)
        MetricPoint.objects.bulk_create(points)
        if not LogCursor.objects.filter(source=source).update(position=offset):
            LogCursor.objects.create(source=source, position=offset)
        self.access_offset = offset
        return counted

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        connection_created.connect(logstore.tune_writer)
        threading.Thread(target=self._events, daemon=True, name="logs-events").start()
        next_sweep = next_metrics = next_report = 0.0
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                self._handle_events()
                if now >= next_sweep:
                    try:
                        self.sweep()
                    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                        # The engine restarting (its socket gone for a moment): the next sweep looks again.
                        logger.warning("could not list the containers: %s", exc)
                    next_sweep = now + SWEEP_SECONDS
                if now >= next_metrics:
                    try:
                        self.read_access_log()
                    except Exception:  # noqa: BLE001 - logs go on without metrics
                        logger.exception("reading the router's access log failed")
                    next_metrics = now + settings.METRICS_SECONDS
                # The platform's database is asked only now and then (a new
                # container, the access log): its connection goes back at
                # once. The log database's stays open between flushes.
                connections["default"].close_if_unusable_or_obsolete()
                behind = self.read_files_once()
                try:
                    behind = self.flush() >= FLUSH_MAX or behind
                except Exception:  # noqa: BLE001 - the database away for a moment: the lines wait in memory
                    logger.exception("storing log lines failed; trying again")
                    connections[LOGS_DB].close()
                if now >= next_report:
                    self.report()
                    next_report = now + REPORT_SECONDS
                if not behind:
                    self.stopping.wait(FLUSH_SECONDS)
        finally:
            self.stop()

    def report(self) -> None:
        """Says how this host's collector is doing, for /metrics
        (observability/platform_metrics.py): a Redis hash with a field per
        host. The lag and the flush's time are the worst since the last report."""
        with self.lock:
            following = len(self.followers) + len(self.files)
        health = {"at": time.time(), "lag_seconds": round(max(self.lag, 0.0), 3),
                  "flush_seconds": round(self.flush_seconds, 4), "stored": self.stored, "following": following,
                  "waiting": self.lines.qsize() + sum(len(rows) for rows in list(self.ready.values()))}
        self.lag = self.flush_seconds = 0.0
        try:
            redis_client().hset(health_key(), this_host(), json.dumps(health))
        except RedisError as exc:
            logger.warning("could not report the collector's health to Redis: %s", exc)

    def stop(self) -> None:
        self.stopping.set()
        if self.events is not None:
            try:
                self.events.close()
            except Exception:  # noqa: BLE001
                pass
        try:
            self.read_files_once()
            while self.flush():
                pass
            self.flush(force_drops=True)
        except Exception:  # noqa: BLE001
            logger.exception("storing the last log lines failed")
        for container_id in list(self.files):
            self._unfollow(container_id)


def percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, int(round(share * len(ordered) + 0.5)) - 1))
    return ordered[index]


def request_points(service_id: int, requests: list[tuple[int, float, int]], stamp: datetime) -> list[MetricPoint]:
    """One period's requests of one service as metric points: request_count
    by status class (as many as were made in the period), latency p50, p95
    and p99 in ms, and response_bytes."""
    epoch = int(stamp.timestamp())
    classes: dict[str, int] = defaultdict(int)
    for status, _, _ in requests:
        classes[f"{status // 100}xx" if status else "other"] += 1
    points = [MetricPoint(service_id=service_id, timestamp=stamp, epoch=epoch, name="request_count", value=count,
                          instance=f"response_code_class={code_class}") for code_class, count in sorted(classes.items())]
    latencies = sorted(duration * 1000 for _, duration, _ in requests)
    for name, share in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        points.append(MetricPoint(service_id=service_id, timestamp=stamp, epoch=epoch,
                                  name=f"request_latency_{name}_ms", value=round(percentile(latencies, share), 3)))
    points.append(MetricPoint(service_id=service_id, timestamp=stamp, epoch=epoch, name="response_bytes",
                              value=sum(size for _, _, size in requests)))
    return points
