"""The log collector: one long-running process (`manage.py collect_logs`,
started by scripts/start.sh beside the workers) that follows the output of
every Hakobune container of the local runtime as it is written, and stores
each line in the log database with its service, instance, process type,
release and stream; and that reads the router's access log into request
metrics for each service, once per METRICS_SECONDS.

- A thread per running container follows its output (runtime/logfollow.py);
  containers that start later are found from the engine's events (and by a
  look at the running ones every SWEEP_SECONDS, for events missed while the
  engine was away).
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
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone

import docker
import requests
from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from redis.exceptions import RedisError

from hakobune.platform.crypto import decrypt
from hakobune.platform.locks import redis_client
from hakobune.platform.queue import this_host
from hakobune.platform.services.models import EnvVar, Release, Service
from hakobune.runtime.docker_local import LABEL_MANAGED, LABEL_PROCESS, LABEL_RELEASE, LABEL_SERVICE, LABEL_TEAM
from hakobune.runtime.exits import KILL_WINDOW_NS, ExitWatch, container_events
from hakobune.runtime.logfollow import RawLine, follow

from .events import record_instance_exit
from .models import LogCursor, LogLine, MetricPoint

logger = logging.getLogger(__name__)

LOGS_DB = "logs"
FLUSH_SECONDS = 0.5
SWEEP_SECONDS = 30
REPORT_SECONDS = 5
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
            if self.at is None or now < self.at:
                self.at = now if self.at is None else self.at
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
            self.at = max(self.at, now)
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            if not self.dropped:
                self.first_drop = time.monotonic()
            self.dropped += 1
            return False

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


def cut(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore") + f" … ({len(encoded) - limit:,} more bytes cut)"


def mask(text: str, secrets: list[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _now() -> datetime:
    return datetime.now(tz=dt_timezone.utc)


def _from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1_000_000_000, tz=dt_timezone.utc)


class Collector:
    def __init__(self, client: docker.DockerClient | None = None, *, access_log: str | None = None):
        self.client = client or docker.DockerClient(
            base_url=settings.RUNTIME_BACKENDS["local"]["OPTIONS"].get("docker_url", "unix:///var/run/docker.sock"),
            timeout=None,
        )
        self.labels = [f"{LABEL_MANAGED}={local_instance()}"]
        self.access_log = settings.ROUTER_ACCESS_LOG if access_log is None else access_log
        self.stopping = threading.Event()
        self.lines: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.followers: dict[str, threading.Thread] = {}
        self.again: set[str] = set()
        self.positions: dict[str, int] = {}
        self.limiters: dict[int, Limiter] = {}
        self.teams: dict[int, int] = {}
        self.events = None
        self.stored = 0
        self.access_offset: int | None = None
        self.lag = self.flush_seconds = 0.0

    # -- following containers --------------------------------------------------------

    def watch(self, container_id: str) -> None:
        """Follows the container unless it is followed already (then its
        follower looks once more when its stream ends)."""
        with self.lock:
            if container_id in self.followers:
                self.again.add(container_id)
                return
            thread = threading.Thread(target=self._follow, args=(container_id,), daemon=True,
                                      name=f"logs-{container_id[:12]}")
            self.followers[container_id] = thread
        thread.start()

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
        # Longest first, so a value containing another is masked whole.
        secrets.sort(key=len, reverse=True)
        return Origin(service.id, service.team_id, container.name, labels.get(LABEL_PROCESS) or "web", number or 0,
                      secrets)

    def _position(self, container_id: str) -> int:
        stored = LogCursor.objects.filter(source=f"container:{container_id}").values_list("position", flat=True).first()
        return max(stored or 0, self.positions.get(container_id, 0))

    def _follow(self, container_id: str) -> None:
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
                limit = settings.LOGS_MAX_LINE_BYTES
                for line in follow(self.client, container_id, since):
                    # A kept line is queued before its position is noted, so
                    # a position flush() reads never runs ahead of a line it
                    # has not taken yet (see _has_waiting).
                    if limiter.take(line.ns / 1_000_000_000):
                        self.lines.put((container_id, origin, line, mask(cut(line.text, limit), origin.secrets)))
                    self.positions[container_id] = line.ns
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
        """Follows every running container of this platform not yet followed."""
        for container in self.client.containers.list(filters={"label": self.labels}, sparse=True):
            if (container.attrs.get("Labels") or {}).get(LABEL_SERVICE):
                with self.lock:
                    known = container.id in self.followers
                if not known:
                    self.watch(container.id)

    def _events(self) -> None:
        """Follows containers as they start, and hands the exits of
        instances that Hakobune did not stop (crashes, OOM kills) to the
        platform's events, from where the last one recorded left off."""
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
                    if event.get("Action") == "start" and attributes.get(LABEL_SERVICE) and event.get("id"):
                        self.watch(event["id"])
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

    # -- storing ---------------------------------------------------------------------

    def flush(self, *, force_drops: bool = False) -> int:
        """Stores the lines waiting, with their sources' positions, in one
        transaction; then says the drops whose window is over."""
        started = time.monotonic()
        rows, positions, oldest_ns = [], {}, None
        try:
            while len(rows) < 5000:
                container_id, origin, line, text = self.lines.get_nowait()
                rows.append(self._row(origin, line, text))
                positions[container_id] = max(line.ns, positions.get(container_id, 0))
                oldest_ns = line.ns if oldest_ns is None else min(oldest_ns, line.ns)
        except queue.Empty:
            pass
        # Sources that only dropped lines move on too, so a restart does not
        # read (and count) their lines again.
        for container_id, ns in list(self.positions.items()):
            if ns > positions.get(container_id, 0):
                if not self._has_waiting(container_id):
                    positions[container_id] = ns
        rows += self._drop_rows(force=force_drops)
        if not rows and not positions:
            return 0
        with transaction.atomic(using=LOGS_DB):
            LogLine.objects.bulk_create(rows, batch_size=1000)
            for container_id, ns in positions.items():
                source = f"container:{container_id}"
                if not LogCursor.objects.filter(source=source).update(position=ns):
                    LogCursor.objects.create(source=source, position=ns)
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
        # queue empty now, that line was taken by this flush.
        return not self.lines.empty()

    def _row(self, origin: Origin, line: RawLine, text: str) -> LogLine:
        return LogLine(service_id=origin.service_id, team_id=origin.team_id, timestamp=_from_ns(line.ns),
                       instance=origin.instance, process=origin.process, release=origin.release, stream=line.stream,
                       text=text, size=len(text.encode("utf-8")))

    def _drop_rows(self, *, force: bool = False) -> list[LogLine]:
        rows = []
        with self.lock:
            limiters = list(self.limiters.items())
        for service_id, limiter in limiters:
            dropped, span = limiter.due(settings.LOGS_DROP_WINDOW_SECONDS, force=force)
            if dropped:
                text = drop_text(dropped, span)
                rows.append(LogLine(service_id=service_id, team_id=self.teams.get(service_id, 0), timestamp=_now(),
                                    instance="", process="", release=0, stream=LogLine.Stream.PLATFORM, text=text,
                                    size=len(text), dropped=dropped))
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
        threading.Thread(target=self._events, daemon=True, name="logs-events").start()
        next_sweep = next_metrics = next_report = 0.0
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
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
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - the database away for a moment: the lines wait in memory
                    logger.exception("storing log lines failed; trying again")
                close_old_connections()
                if now >= next_report:
                    self.report()
                    next_report = now + REPORT_SECONDS
                self.stopping.wait(FLUSH_SECONDS)
        finally:
            self.stop()

    def report(self) -> None:
        """Says how this host's collector is doing, for /metrics
        (observability/platform_metrics.py): a Redis hash with a field per
        host. The lag and the flush's time are the worst since the last report."""
        with self.lock:
            following = len(self.followers)
        health = {"at": time.time(), "lag_seconds": round(max(self.lag, 0.0), 3),
                  "flush_seconds": round(self.flush_seconds, 4), "stored": self.stored, "following": following,
                  "waiting": self.lines.qsize()}
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
            self.flush(force_drops=True)
        except Exception:  # noqa: BLE001
            logger.exception("storing the last log lines failed")


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
