"""Following what the local runtime's containers print, as they print it:
each container's output from a point in time on (stdout and stderr apart,
each line with the engine's own timestamp in nanoseconds). The engine's
events saying a container started or exited are in runtime/exits.py. No
Django here: the platform's log collector
(hakobune/platform/observability/logcollector.py) decides what to keep.

Two ways to read a container's output:

- LogFile reads the file the engine writes it to (the json-file log driver,
  Hakobune's containers' driver), the way log shippers do. Reading a file
  costs the engine nothing and lets the reader take many lines at each look.
- follow() asks the engine for it (`GET /containers/{id}/logs?follow=1`),
  for when that file cannot be read here (another log driver, an engine on
  another host, its data root not mounted): the engine then reads the file
  for each reader and sends each line as an HTTP chunk of its own."""

from __future__ import annotations

import calendar
import glob
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple

import docker

STREAMS = {1: "stdout", 2: "stderr"}


class RawLine(NamedTuple):
    stream: str  # stdout or stderr
    ns: int  # the engine's timestamp, nanoseconds since the epoch
    text: str
    # Bytes of a very long line left out of `text` (see LogFile.JOIN_MAX).
    left_out: int = 0


class _Stamps:
    """Parses the engine's RFC 3339 timestamps (2026-11-30T00:40:01.123456789Z)
    to nanoseconds; the seconds part is parsed once per second, not per line."""

    def __init__(self):
        self._prefix = ""
        self._seconds = 0

    def ns(self, stamp: str) -> int | None:
        prefix = stamp[:19]
        if prefix != self._prefix:
            if len(stamp) < 20 or stamp[10] != "T":
                return None
            try:
                self._seconds = calendar.timegm(datetime.fromisoformat(prefix).timetuple())
            except ValueError:
                return None
            self._prefix = prefix
        if stamp[-1] != "Z":
            return None  # the engine writes UTC; this is not its stamp
        digits = stamp[20:-1]
        if len(digits) != 9:
            if stamp[19] not in ".Z":
                return None
            digits = digits[:9].ljust(9, "0")
        try:
            return self._seconds * 1_000_000_000 + int(digits)
        except ValueError:
            return None


def follow(client: docker.DockerClient, container_id: str, since_ns: int = 0, *,
           pause: float = 0.0) -> Iterator[RawLine]:
    """Every line the container printed after `since_ns` (none at or before
    it, so a follower that resumes from its last line repeats none; nor
    any at or before one already given), then
    each new one as it is printed, until the container stops (the stream
    ends). Raises docker.errors.NotFound when the container is gone.

    With `pause`, the stream is read at most once per `pause` seconds while
    the engine has less than a full read to give: the lines wait in the
    socket meanwhile, and each wake-up takes all of them at once."""
    api = client.api
    params = {"follow": 1, "stdout": 1, "stderr": 1, "timestamps": 1}
    if since_ns:
        params["since"] = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
    response = api._get(api._url("/containers/{0}/logs", container_id), params=params, stream=True)
    api._raise_for_status(response)
    # Following waits as long as the container prints nothing.
    api._disable_socket_timeout(api._get_raw_response_socket(response))
    stamps = _Stamps()
    pending = {1: b"", 2: b""}
    try:
        for stream_id, data in _frames(_body(response, pause)):
            if stream_id not in STREAMS:
                continue
            name = STREAMS[stream_id]
            if pending[stream_id]:
                data = pending[stream_id] + data
            *lines, pending[stream_id] = data.split(b"\n")
            for raw in lines:
                stamp, _, text = raw.decode("utf-8", "replace").partition(" ")
                ns = stamps.ns(stamp)
                if ns is None or ns <= since_ns:
                    continue
                # The engine may send lines again as its log file rotates
                # under a reader; one container's lines come in time order,
                # so none at or before the last one is new.
                since_ns = ns
                yield RawLine(name, ns, text[:-1] if text.endswith("\r") else text)
    finally:
        response.close()


def _body(response, pause: float = 0.0) -> Iterator[bytes]:
    """The answer's body as it arrives, in pieces of whatever is there. The
    engine sends each line as an HTTP chunk of its own; read through
    http.client, a flood's lines would cost a few calls each, so the chunked
    encoding is undone here, on everything read at once."""
    pieces = _reads(response.raw._fp.fp, pause)  # the connection's buffered reader, after the headers
    if (response.headers.get("Transfer-Encoding") or "").lower() != "chunked":
        yield from pieces
        return
    buffer = b""
    at = 0
    for piece in pieces:
        buffer = buffer[at:] + piece if at < len(buffer) else piece
        at = 0
        out = []
        while True:
            newline = buffer.find(b"\r\n", at)
            if newline < 0:
                break
            size = int(buffer[at:newline].split(b";", 1)[0], 16)
            if size == 0:
                if out:
                    yield b"".join(out)
                return
            if len(buffer) < newline + 2 + size + 2:
                break
            out.append(buffer[newline + 2:newline + 2 + size])
            at = newline + 2 + size + 2
        if out:
            yield b"".join(out)


def _reads(fp, pause: float) -> Iterator[bytes]:
    """What the reader has, as it comes; after a read that was not full, the
    next waits `pause` seconds (once what it gave was handled)."""
    while True:
        piece = fp.read1(CHUNK)
        if not piece:
            return
        yield piece
        if pause and len(piece) < CHUNK:
            time.sleep(pause)


def _frames(pieces: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """The engine's multiplexed frames (an 8-byte header: the stream, then
    the length, big-endian) as (stream, data), until the stream ends."""
    buffer = b""
    at = 0
    for chunk in pieces:
        buffer = buffer[at:] + chunk if at < len(buffer) else chunk
        at = 0
        end = len(buffer)
        while end - at >= 8:
            length = int.from_bytes(buffer[at + 4:at + 8], "big")
            if end - at - 8 < length:
                break
            yield buffer[at], buffer[at + 8:at + 8 + length]
            at += 8 + length


CHUNK = 256 * 1024


class LogFile:
    """A container's output as the engine's json-file log driver writes it
    (one JSON object a line: {"log": "text\\n", "stream": "stdout", "time":
    "2026-11-30T00:40:01.123456789Z"}), from `since_ns` on: each read() gives
    the lines written since the one before, across the engine's rotations
    (it renames <path> to <path>.1, <path>.1 to <path>.2 …, and starts a new
    <path>). The open file is read to its end after a rotation or the
    container's removal (the engine deletes the folder; an open file stays
    readable). Raises OSError when no file can be opened."""

    # Read at most this much at a time, so one container's backlog never
    # holds up the others for long.
    READ_MAX = 1024 * 1024
    PIECE = 64 * 1024
    # The engine writes a line longer than 16 KiB in pieces (no newline at
    # the end of "log" but in the last); they are joined into one line of at
    # most this many characters (the rest is counted in RawLine.left_out).
    JOIN_MAX = 256 * 1024

    def __init__(self, path: str, since_ns: int = 0):
        self.path = path
        self.since_ns = since_ns
        self.stamps = _Stamps()
        self.rest = b""  # the start of a line not written whole yet
        self.long: dict[str, _LongLine] = {}  # by stream: a long line's pieces so far
        self.more = False
        self.file = None
        self.inode = 0
        chain = self._chain()
        # The newest file that starts at or before the position (the files
        # before it hold only older lines); else every line is newer.
        for name in reversed(chain if since_ns else []):
            first = self._first_ns(name)
            if first is not None and first <= since_ns:
                self._open(name)
                self._seek_near(since_ns)
                break
        else:
            self._open(chain[0])

    def _chain(self) -> list[str]:
        """The log's files, oldest first: <path>.N … <path>.1, <path>."""
        rotated = []
        for name in glob.glob(glob.escape(self.path) + ".*"):
            suffix = name[len(self.path) + 1:]
            if suffix.isdigit():
                rotated.append((int(suffix), name))
        return [name for _, name in sorted(rotated, reverse=True)] + [self.path]

    def _open(self, name: str) -> None:
        file = open(name, "rb", buffering=0)  # noqa: SIM115 - kept open across reads, closed by close()
        if self.file is not None:
            self.file.close()
        self.file, self.inode, self.rest = file, os.fstat(file.fileno()).st_ino, b""

    def _first_ns(self, name: str) -> int | None:
        try:
            with open(name, "rb") as handle:
                return self._line_ns(handle.readline())
        except OSError:
            return None

    def _line_ns(self, raw: bytes) -> int | None:
        at = raw.rfind(b'"time":"')
        if at < 0:
            return None
        end = raw.find(b'"', at + 8)
        return self.stamps.ns(raw[at + 8:end].decode("ascii", "replace")) if end > 0 else None

    def _seek_near(self, since_ns: int) -> None:
        """Starts the open file's reading shortly before its first line
        after `since_ns`, found by halving (its lines are in time order), so
        resuming in a large file reads little of what is stored already."""
        low, high = 0, os.fstat(self.file.fileno()).st_size
        while high - low > 64 * 1024:
            middle = (low + high) // 2
            self.file.seek(middle)
            found = self.file.read(64 * 1024).split(b"\n", 2)
            stamp = self._line_ns(found[1]) if len(found) == 3 else None
            if stamp is not None and stamp <= since_ns:
                low = middle
            else:
                high = middle
        self.file.seek(low)
        while low:  # to the start of the next line
            data = self.file.read(64 * 1024)
            newline = data.find(b"\n")
            if not data or newline >= 0:
                self.file.seek(newline + 1 - len(data), os.SEEK_CUR)
                return

    def read(self) -> list[RawLine]:
        """The whole lines written since the last read (at most READ_MAX
        bytes of them: call again while `more` is true)."""
        data = self._read()
        if not data and self._rotated():
            data = self._read()
            if not data:
                self._open(self._next())
                data = self._read()
        self.more = len(data) >= self.READ_MAX
        if not data:
            return []
        *whole, self.rest = (self.rest + data).split(b"\n")
        return self._lines(whole)

    def _read(self) -> bytes:
        # In pieces of 64 KiB: a read of 1 MiB costs a 1 MiB buffer, however
        # little there is to read (the usual case).
        pieces, size = [], 0
        while size < self.READ_MAX:
            piece = self.file.read(self.PIECE)
            pieces.append(piece)
            size += len(piece)
            if len(piece) < self.PIECE:
                break
        return b"".join(pieces)

    def _rotated(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return False  # the container removed: what is left is in the open file

    def _next(self) -> str:
        """The file written after the open one (by its inode), else the
        oldest one there (the reader fell more than a whole file behind)."""
        chain = self._chain()
        for number, name in enumerate(chain[:-1]):
            try:
                if os.stat(name).st_ino == self.inode:
                    return chain[number + 1]
            except FileNotFoundError:
                continue
        return chain[0]

    def _lines(self, raws: list[bytes]) -> list[RawLine]:
        try:
            # One call for every line: a few times quicker than one a line.
            entries = json.loads(b"[" + b",".join(raw for raw in raws if raw) + b"]")
        except ValueError:
            entries = []
            for raw in raws:
                try:
                    entries.append(json.loads(raw))
                except ValueError:
                    continue  # not the engine's (a line cut by a crash of the engine)
        lines = []
        since, stamps = self.since_ns, self.stamps
        for entry in entries:
            try:
                text, stream, ns = entry["log"], entry["stream"], stamps.ns(entry["time"])
            except (KeyError, TypeError):
                continue
            if ns is None or ns <= since:
                continue
            if not text.endswith("\n"):
                self.long.setdefault(stream, _LongLine(self.JOIN_MAX)).add(text)
                continue
            text, left_out = text[:-1], 0
            if stream in self.long:
                long = self.long.pop(stream)
                long.add(text)
                text, left_out = "".join(long.pieces), long.left_out
            lines.append(RawLine(stream, ns, text[:-1] if text.endswith("\r") else text, left_out))
        return lines

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class _LongLine:
    """The pieces of a line the engine wrote in several, up to `room` characters."""

    def __init__(self, room: int):
        self.pieces: list[str] = []
        self.room = room
        self.left_out = 0  # bytes

    def add(self, text: str) -> None:
        if len(text) > self.room:
            self.left_out += len(text[self.room:].encode("utf-8"))
            text = text[: self.room]
        if text:
            self.pieces.append(text)
            self.room -= len(text)

