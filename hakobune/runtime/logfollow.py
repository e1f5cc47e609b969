"""Following what the local runtime's containers print, as they print it:
each container's output from a point in time on (stdout and stderr apart,
each line with the engine's own timestamp in nanoseconds), and the engine's
events saying a container started. No Django here: the platform's log
collector (hakobune/platform/observability/logcollector.py) decides what to
keep."""

from __future__ import annotations

import calendar
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import docker

STREAMS = {1: "stdout", 2: "stderr"}


@dataclass(frozen=True)
class RawLine:
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
        if len(stamp) < 20 or stamp[10] != "T":
            return None
        prefix = stamp[:19]
        if prefix != self._prefix:
            try:
                self._seconds = calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M:%S"))
            except ValueError:
                return None
            self._prefix = prefix
        fraction = stamp[19:].rstrip("Z")
        if "+" in fraction or fraction.count("-"):
            # A zone other than UTC: the engine writes UTC, so this is not its stamp.
            return None
        digits = fraction.lstrip(".")[:9].ljust(9, "0") if fraction else "0" * 9
        if not digits.isdigit():
            return None
        return self._seconds * 1_000_000_000 + int(digits)


def follow(client: docker.DockerClient, container_id: str, since_ns: int = 0) -> Iterator[RawLine]:
    """Every line the container printed after `since_ns` (none at or before
    it, so a follower that resumes from its last line repeats none), then
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
        for stream_id, data in _frames(response.raw):
            if stream_id not in STREAMS:
                continue
            chunk = pending[stream_id] + data
            *lines, pending[stream_id] = chunk.split(b"\n")
            for raw in lines:
                stamp, _, text = raw.decode("utf-8", "replace").partition(" ")
                ns = stamps.ns(stamp)
                if ns is None or ns <= since_ns:
                    continue
                yield RawLine(STREAMS[stream_id], ns, text.rstrip("\r"))
    finally:
        response.close()


def _frames(raw) -> Iterator[tuple[int, bytes]]:
    """The engine's multiplexed frames (an 8-byte header: the stream, then
    the length, big-endian) as (stream, data), until the stream ends."""
    while True:
        header = raw.read(8)
        if not header or len(header) < 8:
            return
        length = struct.unpack(">I", header[4:8])[0]
        data = raw.read(length) if length else b""
        if length and not data:
            return
        yield header[0], data


def started(client: docker.DockerClient, labels: list[str]):
    """The engine's events stream of containers with these labels starting:
    yields each one's id. Close the returned stream (.close()) to end it."""
    return client.events(decode=True, filters={"type": "container", "event": ["start"], "label": labels})
