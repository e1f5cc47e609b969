"""Log drains: a team's runtime logs, as the log collector stores them, sent
on to an endpoint of the team's own: an https:// address that takes JSON
lines POSTed in batches, or a syslog server (RFC 5424 over TCP, framed by
octet counts as RFC 6587 says; syslog+tls:// with TLS).

The address goes through the SSRF guard (worker/netguard.py) when it is
saved and again before every connection, and the connection goes to the
address that was checked, so a name that later points to a private,
link-local or metadata address (DNS rebinding) is refused, never reached.
Plain http:// and syslog://, and private or loopback addresses, are only
for hosts an administrator lists in LOG_DRAIN_ALLOWED_HOSTS. Redirects are
not followed.

Shipping runs in the log collector's process (`manage.py collect_logs`
starts a `Shipper`), never in a request: every LOG_DRAIN_POLL_SECONDS each
drain that has new lines and is not waiting out a back-off gets a turn, on
a pool of LOG_DRAIN_CONCURRENCY threads. A turn takes the drain's lease (a
conditional UPDATE, so the collectors of two hosts never send the same
lines at once), checks the address, connects, and sends up to
LOG_DRAIN_BATCHES_PER_TURN batches of LOG_DRAIN_BATCH_LINES of the team's
lines after the drain's position, then saves the position. A failure keeps
the position of the last batch the endpoint took, records the error and
waits 2, 4, 8 … s (at most LOG_DRAIN_MAX_BACKOFF) before the next turn. A
drain more than LOG_DRAIN_MAX_BACKLOG lines behind skips its oldest lines
and counts them. Delivery is at least once: lines sent just before a
crash, whose position was not saved yet, are sent again."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import close_old_connections
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from hakobune.platform.crypto import decrypt, encrypt
from hakobune.platform.services.models import Service
from hakobune.worker import netguard

from .models import LogDrain, LogLine

logger = logging.getLogger(__name__)

HTTP_SCHEMES = ("https", "http")
SYSLOG_SCHEMES = ("syslog+tls", "syslog")
ENCRYPTED = frozenset({"https", "syslog+tls"})
MAX_URL_LENGTH = 2000
# What is read of an endpoint's answer: its status is what counts.
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "Hakobune-log-drain/1"

# Replaced in tests that need a name to resolve to a given address.
resolver = netguard.default_resolver


class DrainRefused(ValueError):
    """The address cannot be a drain; the message says why, for a person."""


class DrainFailed(Exception):
    """A turn failed: a diagnosis (platform/diagnoses.py, "drain.*") with its parameters."""

    def __init__(self, rule: str, **params):
        super().__init__(f"{rule} {params}")
        self.rule, self.params = rule, params


# -- the address -------------------------------------------------------------------------------


def drain_policy() -> netguard.Policy:
    allowed = frozenset(settings.LOG_DRAIN_ALLOWED_HOSTS)
    return netguard.Policy(schemes=ENCRYPTED, plain_schemes=frozenset({"http", "syslog"}), http_hosts=allowed,
                           allowed_hosts=allowed, does_not="does not send logs to", only="sends logs only to",
                           example="https://logs.example.com/ingest")


def check_drain_url(url: str) -> netguard.GuardedURL:
    """The address checked as a drain; raises DrainRefused with what to change."""
    url = (url or "").strip()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in HTTP_SCHEMES + SYSLOG_SCHEMES:
        raise DrainRefused(_("Give an https:// address (the lines are POSTed to it as JSON lines) or a "
                             "syslog+tls://host:port address (RFC 5424 over TLS)."))
    if len(url) > MAX_URL_LENGTH:
        raise DrainRefused(_("The address is longer than %(limit)s characters.") % {"limit": MAX_URL_LENGTH})
    try:
        guarded = netguard.check_url(url, drain_policy(), resolver)
    except netguard.UnsafeURL as exc:
        raise DrainRefused(_("Hakobune will not send logs to this address: %(reason)s") % {"reason": exc}) from None
    parts = urlsplit(url)
    if scheme in SYSLOG_SCHEMES and (parts.path not in ("", "/") or parts.query or parts.fragment or parts.username):
        raise DrainRefused(_("A syslog address is a host and a port only, like syslog+tls://logs.example.com:6514."))
    return guarded


def shown_url(guarded: netguard.GuardedURL) -> str:
    """The address as pages and the API show it: no user, password, query or fragment."""
    parts = urlsplit(guarded.url)
    host = f"[{guarded.host}]" if ":" in guarded.host else guarded.host
    port = f":{parts.port}" if parts.port else ""
    return f"{guarded.scheme}://{host}{port}{parts.path}"[:500]


def kind_of(scheme: str) -> str:
    return LogDrain.Kind.SYSLOG if scheme in SYSLOG_SCHEMES else LogDrain.Kind.HTTPS


def newest_line_id(team_id: int) -> int:
    return LogLine.objects.filter(team_id=team_id).aggregate(newest=Max("id"))["newest"] or 0


# -- what owners do ------------------------------------------------------------------------------


def drain_of(team) -> LogDrain | None:
    return LogDrain.objects.filter(team=team).first()


def set_drain(*, team, url: str, created_by=None) -> LogDrain:
    """Sends the team's logs to `url` from now on (the lines stored before are
    not sent). The same address again keeps the drain's position and counts."""
    url = (url or "").strip()
    guarded = check_drain_url(url)
    drain = drain_of(team)
    if drain is not None and _url_of(drain) == url:
        return drain
    fields = {
        "kind": kind_of(guarded.scheme), "url_encrypted": encrypt(url), "url_shown": shown_url(guarded),
        "created_by": created_by, "position": newest_line_id(team.id), "shipped_lines": 0, "dropped_lines": 0,
        "last_dropped_at": None, "last_success_at": None, "last_error_rule": "", "last_error_params": {},
        "last_error_at": None, "failures": 0, "next_attempt_at": None, "leased_until": None,
    }
    drain, _created = LogDrain.objects.update_or_create(team=team, defaults=fields)
    return drain


def remove_drain(*, team) -> bool:
    deleted, _ = LogDrain.objects.filter(team=team).delete()
    return bool(deleted)


def _url_of(drain: LogDrain) -> str:
    try:
        return decrypt(drain.url_encrypted)
    except ValueError:
        return ""


# -- the lines as the endpoint gets them ---------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    id: int
    timestamp: datetime
    team: str
    service: str
    instance: str
    process: str
    release: int
    stream: str
    text: str

    def as_json(self) -> dict:
        return {"id": self.id, "time": _rfc3339(self.timestamp), "team": self.team, "service": self.service,
                "instance": self.instance, "process": self.process, "release": self.release, "stream": self.stream,
                "message": self.text}


def _rfc3339(stamp: datetime) -> str:
    return stamp.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_lines(entries: list[Entry]) -> bytes:
    return "".join(json.dumps(entry.as_json(), ensure_ascii=False) + "\n" for entry in entries).encode()


# RFC 5424: facility user (1); stdout is informational, stderr an error, and
# what Hakobune says about the log (lines dropped) a notice.
SYSLOG_FACILITY = 1
SYSLOG_SEVERITY = {LogLine.Stream.STDOUT: 6, LogLine.Stream.STDERR: 3, LogLine.Stream.PLATFORM: 5}


def _syslog_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, or "-" when empty."""
    cleaned = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in value)[:limit]
    return cleaned or "-"


def syslog_frame(entry: Entry) -> bytes:
    """One line as an RFC 5424 message, framed by its length (RFC 6587 octet
    counting): HOSTNAME is <service>.<team>, APP-NAME the process type,
    PROCID the instance, MSGID the stream."""
    priority = SYSLOG_FACILITY * 8 + SYSLOG_SEVERITY.get(entry.stream, 6)
    header = " ".join([
        f"<{priority}>1", _rfc3339(entry.timestamp), _syslog_field(f"{entry.service}.{entry.team}", 255),
        _syslog_field(entry.process, 48), _syslog_field(entry.instance, 128), _syslog_field(entry.stream, 32), "-",
    ])
    message = f"{header} {entry.text}".encode()
    return f"{len(message)} ".encode() + message


def pending(drain: LogDrain, limit: int) -> list[LogLine]:
    """The team's lines after the drain's position, oldest first."""
    return list(LogLine.objects.filter(team_id=drain.team_id, id__gt=drain.position).order_by("id")[:limit])


def entries_of(drain: LogDrain, lines: list[LogLine]) -> list[Entry]:
    """The lines as entries with their service's name. A line whose service
    is another team's is never sent (the team's own id on every line is the
    rule; this is the second look)."""
    services = {
        service_id: (team_id, name)
        for service_id, team_id, name in Service.objects.filter(id__in={line.service_id for line in lines})
        .values_list("id", "team_id", "name")
    }
    entries = []
    for line in lines:
        team_id, name = services.get(line.service_id, (drain.team_id, f"service-{line.service_id}"))
        if team_id != drain.team_id or line.team_id != drain.team_id:
            logger.error("log line %s of service %s is not team %s's; not sent to its drain", line.id,
                         line.service_id, drain.team_id)
            continue
        entries.append(Entry(line.id, line.timestamp, drain.team.name, name, line.instance, line.process,
                             line.release, line.stream, line.text))
    return entries


# -- connections ------------------------------------------------------------------------------------


def _address(guarded: netguard.GuardedURL) -> str:
    return f"{guarded.host}:{guarded.port}"


def open_socket(guarded: netguard.GuardedURL, timeout: float) -> socket.socket:
    """A connection to the address the guard checked (never a new look-up),
    wrapped in TLS for https:// and syslog+tls:// (the certificate checked
    for the host's name)."""
    failure: DrainFailed | None = None
    for address in guarded.addresses:
        try:
            raw = socket.create_connection((address, guarded.port), timeout=timeout)
            break
        except TimeoutError:
            failure = DrainFailed("drain.timeout", address=_address(guarded), seconds=timeout)
        except OSError as exc:
            failure = DrainFailed("drain.unreachable", address=_address(guarded), detail=exc.strerror or str(exc))
    else:
        raise failure or DrainFailed("drain.unreachable", address=_address(guarded), detail="no address")
    if guarded.scheme not in ENCRYPTED:
        return raw
    context = ssl.create_default_context(cafile=settings.LOG_DRAIN_CA_BUNDLE or None)
    try:
        return context.wrap_socket(raw, server_hostname=guarded.host)
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        raise DrainFailed("drain.tls", address=_address(guarded), detail=exc.verify_message or exc.reason) from None
    except TimeoutError:
        raw.close()
        raise DrainFailed("drain.timeout", address=_address(guarded), seconds=timeout) from None
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        raise DrainFailed("drain.tls", address=_address(guarded), detail=getattr(exc, "reason", None) or str(exc)) from None


class SyslogSender:
    """One TCP (or TLS) connection for a turn; each batch is written whole."""

    def __init__(self, guarded: netguard.GuardedURL, timeout: float):
        self.guarded, self.timeout = guarded, timeout
        self.sock: socket.socket | None = None

    def send(self, entries: list[Entry]) -> None:
        if self.sock is None:
            self.sock = open_socket(self.guarded, self.timeout)
        try:
            self.sock.sendall(b"".join(syslog_frame(entry) for entry in entries))
        except TimeoutError:
            self.close()
            raise DrainFailed("drain.timeout", address=_address(self.guarded), seconds=self.timeout) from None
        except OSError as exc:
            self.close()
            raise DrainFailed("drain.unreachable", address=_address(self.guarded),
                              detail=exc.strerror or str(exc)) from None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None


class HttpSender:
    """POSTs each batch as JSON lines, over one kept-alive connection to the
    checked address while the endpoint keeps it open (a new one, to the same
    address, when it does not)."""

    def __init__(self, guarded: netguard.GuardedURL, timeout: float):
        self.guarded, self.timeout = guarded, timeout
        parts = urlsplit(guarded.url)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = netguard.DEFAULT_PORTS[guarded.scheme]
        host = f"[{guarded.host}]" if ":" in guarded.host else guarded.host
        self.headers = {
            "Host": host if guarded.port == default_port else f"{host}:{guarded.port}",
            "Content-Type": "application/x-ndjson", "User-Agent": USER_AGENT,
        }
        if guarded.username or guarded.password:
            pair = f"{unquote(guarded.username)}:{unquote(guarded.password)}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self.connection: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.connection is None or self.connection.sock is None:
            connection = http.client.HTTPConnection(self.guarded.host, self.guarded.port, timeout=self.timeout)
            connection.auto_open = 0  # never a connection of its own, which would look the name up again
            connection.sock = open_socket(self.guarded, self.timeout)
            self.connection = connection
        return self.connection

    def send(self, entries: list[Entry]) -> None:
        body = json_lines(entries)
        for attempt in (1, 2):
            reused = self.connection is not None
            try:
                answer = self._post(body)
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # An endpoint may close a kept-alive connection between two
                # batches: then once more, on a new connection.
                if not (reused and attempt == 1):
                    raise DrainFailed("drain.unreachable", address=_address(self.guarded),
                                      detail="the connection was closed before an answer") from None
        if 300 <= answer.status < 400:
            raise DrainFailed("drain.redirect", status=answer.status)
        if not 200 <= answer.status < 300:
            raise DrainFailed("drain.http_status", status=answer.status)

    def _post(self, body: bytes) -> http.client.HTTPResponse:
        connection = self._connection()
        try:
            connection.request("POST", self.path, body=body, headers=self.headers)
            answer = connection.getresponse()
            answer.read(MAX_ANSWER_BYTES)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()
            raise
        except TimeoutError:
            self.close()
            raise DrainFailed("drain.timeout", address=_address(self.guarded), seconds=self.timeout) from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise DrainFailed("drain.unreachable", address=_address(self.guarded),
                              detail=getattr(exc, "strerror", None) or str(exc) or type(exc).__name__) from None
        if answer.will_close or not answer.isclosed():
            self.close()
        return answer

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def sender_for(guarded: netguard.GuardedURL, timeout: float):
    return SyslogSender(guarded, timeout) if guarded.scheme in SYSLOG_SCHEMES else HttpSender(guarded, timeout)


# -- a turn ----------------------------------------------------------------------------------------


def lease_seconds() -> float:
    return settings.LOG_DRAIN_TIMEOUT * (settings.LOG_DRAIN_BATCHES_PER_TURN + 3)


def _lease(drain_id: int, now: datetime) -> bool:
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=now)
    return LogDrain.objects.filter(free, id=drain_id).update(
        leased_until=now + timedelta(seconds=lease_seconds())) == 1


def due_drains(now: datetime | None = None) -> list[int]:
    """The drains with lines to send that are not waiting out a back-off nor
    held by a turn (of this or another host's collector): one read of the
    drains, one index look per drain in the logs."""
    now = now or timezone.now()
    waiting_over = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=now)
    due = []
    for drain_id, team_id, position in LogDrain.objects.filter(waiting_over, free).values_list("id", "team_id",
                                                                                              "position"):
        if LogLine.objects.filter(team_id=team_id, id__gt=position).exists():
            due.append(drain_id)
    return due


def ship(drain_id: int, *, now: datetime | None = None) -> int:
    """One turn of one drain: sends what it can of the team's new lines;
    returns the lines sent. Nothing happens while another turn holds it."""
    now = now or timezone.now()
    if not _lease(drain_id, now):
        return 0
    drain = LogDrain.objects.select_related("team").filter(id=drain_id).first()
    if drain is None:
        return 0
    turn = Turn(drain)
    outcome: dict = {}
    try:
        turn.sender = sender_for(_checked_again(drain), settings.LOG_DRAIN_TIMEOUT)
        turn.send_batches(now)
        outcome = {"last_success_at": timezone.now(), "failures": 0, "next_attempt_at": None}
    except DrainFailed as failed:
        backoff = min(settings.LOG_DRAIN_MAX_BACKOFF, 2 ** min(drain.failures + 1, 20))
        outcome = {"last_error_rule": failed.rule, "last_error_params": failed.params, "last_error_at": timezone.now(),
                   "failures": F("failures") + 1, "next_attempt_at": timezone.now() + timedelta(seconds=backoff)}
        logger.info("log drain of team %s failed (%s); next attempt in %s s", drain.team.name, failed.rule, backoff)
    finally:
        turn.end(outcome)
    return turn.sent


class Turn:
    """One turn's sending: the drain's position and count follow each batch
    the endpoint took, and are saved at the end whatever happened."""

    def __init__(self, drain: LogDrain):
        self.drain, self.sent, self.sender = drain, 0, None

    def send_batches(self, now: datetime) -> None:
        """Up to LOG_DRAIN_BATCHES_PER_TURN batches of LOG_DRAIN_BATCH_LINES."""
        drain, batch = self.drain, settings.LOG_DRAIN_BATCH_LINES
        lines = pending(drain, batch)
        # Only a drain a whole batch behind can be too far behind.
        if len(lines) == batch and skip_excess(drain, now):
            lines = pending(drain, batch)
        for _batch in range(settings.LOG_DRAIN_BATCHES_PER_TURN):
            if not lines:
                return
            entries = entries_of(drain, lines)
            if entries:
                self.sender.send(entries)
            drain.position = lines[-1].id
            self.sent += len(entries)
            if len(lines) < batch:
                return
            lines = pending(drain, batch)

    def end(self, outcome: dict) -> None:
        if self.sender is not None:
            self.sender.close()
        if self.sent and "last_success_at" not in outcome:
            outcome["last_success_at"] = timezone.now()
        # To the drain as it was read: one whose address was changed
        # meanwhile starts afresh, and keeps nothing of this turn.
        LogDrain.objects.filter(id=self.drain.id, url_encrypted=self.drain.url_encrypted).update(
            position=self.drain.position, shipped_lines=F("shipped_lines") + self.sent, leased_until=None, **outcome)


def _checked_again(drain: LogDrain) -> netguard.GuardedURL:
    """The address checked at connect time, as when it was saved: a name that
    now resolves to a private or metadata address is refused here."""
    try:
        return netguard.check_url(_url_of(drain), drain_policy(), resolver)
    except netguard.UnsafeURL as exc:
        raise DrainFailed("drain.address_refused", detail=str(exc)) from None


def skip_excess(drain: LogDrain, now: datetime) -> int:
    """Moves a drain that is more than LOG_DRAIN_MAX_BACKLOG lines behind to
    its newest LOG_DRAIN_MAX_BACKLOG lines, counting the ones skipped;
    returns how many. (An index walk of at most that many entries.)"""
    limit = settings.LOG_DRAIN_MAX_BACKLOG
    newer = LogLine.objects.filter(team_id=drain.team_id, id__gt=drain.position)
    cut = newer.order_by("-id").values_list("id", flat=True)[limit:limit + 1]
    cut = next(iter(cut), None)
    if cut is None:
        return 0
    skipped = newer.filter(id__lte=cut).count()
    LogDrain.objects.filter(id=drain.id, url_encrypted=drain.url_encrypted).update(
        position=cut, dropped_lines=F("dropped_lines") + skipped, last_dropped_at=now)
    drain.position = cut
    drain.dropped_lines += skipped
    logger.warning("log drain of team %s is more than %s lines behind: %s oldest lines skipped", drain.team_id, limit,
                   skipped)
    return skipped


# -- in the collector's process ------------------------------------------------------------------------


class Shipper:
    """Gives each due drain a turn every LOG_DRAIN_POLL_SECONDS, at most
    LOG_DRAIN_CONCURRENCY at once, one turn per drain at a time."""

    def __init__(self):
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=max(1, settings.LOG_DRAIN_CONCURRENCY),
                                       thread_name_prefix="log-drain")
        self.lock = threading.Lock()
        self.busy: set[int] = set()
        self.thread = threading.Thread(target=self.run, daemon=True, name="log-drains")

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.wait(settings.LOG_DRAIN_POLL_SECONDS):
            try:
                for drain_id in due_drains():
                    with self.lock:
                        if drain_id in self.busy:
                            continue
                        self.busy.add(drain_id)
                    self.pool.submit(self._turn, drain_id)
            except Exception:  # noqa: BLE001 - a database away for a moment: the next poll looks again
                logger.exception("looking for log drains to ship failed")
            finally:
                close_old_connections()

    def _turn(self, drain_id: int) -> None:
        try:
            ship(drain_id)
        except Exception:  # noqa: BLE001 - one drain's trouble never stops the others
            logger.exception("shipping log drain %s failed", drain_id)
        finally:
            close_old_connections()
            with self.lock:
                self.busy.discard(drain_id)

    def stop(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
