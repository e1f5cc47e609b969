"""Following what the local runtime's containers print, as they print it:
each container's output from a point in time on (stdout and stderr apart,
each line with the engine's own timestamp in nanoseconds). The engine's
events saying a container started come with those saying one exited
(runtime/exits.py). No Django here: the platform's log collector
(hakobune/platform/observability/logcollector.py) decides what to keep."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from typing import NamedTuple

import docker

STREAMS = {1: "stdout", 2: "stderr"}


class RawLine(NamedTuple):
    stream: str  # stdout or stderr
    ns: int  # the engine's timestamp, nanoseconds since the epoch
    text: str


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
                self._seconds = calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M:%S"))
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


def follow(client: docker.DockerClient, container_id: str, since_ns: int = 0) -> Iterator[RawLine]:
    """Every line the container printed after `since_ns` (none at or before
    it, so a follower that resumes from its last line repeats none; nor
    any at or before one already given), then
    each new one as it is printed, until the container stops (the stream
    ends). Raises docker.errors.NotFound when the container is gone."""
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
        for stream_id, data in _frames(_body(response)):
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


def _body(response) -> Iterator[bytes]:
    """The answer's body as it arrives, in pieces of whatever is there. The
    engine sends each line as an HTTP chunk of its own; read through
    http.client, a flood's lines would cost a few calls each, so the chunked
    encoding is undone here, on everything read at once."""
    fp = response.raw._fp.fp  # the connection's buffered reader, after the headers
    if (response.headers.get("Transfer-Encoding") or "").lower() != "chunked":
        while True:
            piece = fp.read1(CHUNK)
            if not piece:
                return
            yield piece
    buffer = b""
    at = 0
    while True:
        piece = fp.read1(CHUNK)
        if not piece:
            return
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
