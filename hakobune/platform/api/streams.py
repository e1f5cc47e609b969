"""Long-lived answers: server-sent event streams (a build's log, a service's
runtime logs, with ?follow=1).

The portal is served over ASGI (docs/architecture.md, "Long-lived
connections"): a stream is an async generator that sleeps on the event loop
between its polls and makes its database and runtime calls through
sync_to_async, so it takes no thread from the requests for pages. Each portal
process serves at most API_STREAM_MAX_OPEN streams at once, and at most
API_STREAM_MAX_OPEN_PER_PERSON of one person's; beyond them a new stream is
refused at once (503 or 429, with Retry-After), never queued."""

from __future__ import annotations

import threading
from collections import Counter

from django.conf import settings
from django.http import StreamingHttpResponse
from rest_framework import exceptions, status

RETRY_AFTER_SECONDS = 10


class TooManyStreams(exceptions.APIException):
    """The portal process serves as many streams as it may."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "too_many_streams"
    wait = RETRY_AFTER_SECONDS  # sent as Retry-After
    default_detail = (f"The portal is serving as many followed logs as it may right now. Follow again in "
                      f"{RETRY_AFTER_SECONDS} seconds, or read the log without ?follow=1.")


class TooManyStreamsOfYours(exceptions.APIException):
    """The person already has as many streams open as one may."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_streams_of_yours"
    wait = RETRY_AFTER_SECONDS

    def __init__(self, limit: int):
        super().__init__(f"You already follow {limit} logs at once in this portal process, as many as one person "
                         f"may. Close one (a `hakobune logs --follow`, a browser tab), then follow again.")


class StreamSlots:
    """How many streams this process serves, in all and per person."""

    def __init__(self):
        self._lock = threading.Lock()
        self.open = 0
        self.per_person: Counter = Counter()

    def take(self, person) -> None:
        with self._lock:
            if self.open >= settings.API_STREAM_MAX_OPEN:
                raise TooManyStreams()
            limit = settings.API_STREAM_MAX_OPEN_PER_PERSON
            if person is not None and self.per_person[person] >= limit:
                raise TooManyStreamsOfYours(limit)
            self.open += 1
            if person is not None:
                self.per_person[person] += 1

    def give_back(self, person) -> None:
        with self._lock:
            self.open = max(0, self.open - 1)
            if person is not None:
                self.per_person[person] -= 1
                if self.per_person[person] <= 0:
                    del self.per_person[person]


SLOTS = StreamSlots()


class EventStreamResponse(StreamingHttpResponse):
    """A stream that holds one of its process's slots until the server closes
    it: at its end, or when the client went away."""

    def __init__(self, events, person):
        super().__init__(events, content_type="text/event-stream; charset=utf-8")
        self["Cache-Control"] = "no-cache"
        # Proxies must pass each event on as it comes.
        self["X-Accel-Buffering"] = "no"
        self._person = person
        self._holds_slot = True

    def close(self):
        if self._holds_slot:
            self._holds_slot = False
            SLOTS.give_back(self._person)
        super().close()


def event_stream(request, events) -> EventStreamResponse:
    """The answer for a follow request: `events` (an async generator of
    server-sent events) if this process has a slot for it, else a refusal."""
    user = getattr(request, "user", None)
    person = user.pk if user is not None and user.is_authenticated else None
    SLOTS.take(person)
    return EventStreamResponse(events, person)


def sse(data: str, *, event: str | None = None, id: int | str | None = None) -> str:
    lines = []
    if event:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    lines += [f"data: {part}" for part in (data.split("\n") or [""])]
    return "\n".join(lines) + "\n\n"
