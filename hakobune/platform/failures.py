"""Every failure the pipeline meets is classified here, once:

- USER: the person's app or input is at fault (a build step failed, an
  archive was refused, the app did not answer). Fails at once, in words.
- TRANSIENT: something the platform relies on hiccuped (the Docker Engine,
  Redis, a registry or a Google API was unreachable or answered 5xx/429).
  The step that met it is tried again with backoff; steps are safe to repeat,
  since each claims its work with a compare-and-swap.
- PLATFORM: Hakobune itself or its set-up is at fault (a bug, a missing stack,
  a target that is not configured). Fails with a reason for the
  administrator, and is logged as such.

Libraries say which they raise through plain attributes, so that they need
no import from here: `transient` (True: trying again can help), `user_error`
(BuildError), `permanent` (RuntimeBackendError: False means transient) and
`platform_fault`."""

from __future__ import annotations

import docker.errors
import redis
import requests
from django.db import InterfaceError, OperationalError
from django.db import models
from google.api_core import exceptions as google_errors

from hakobune.runtime.base import RuntimeBackendError
from hakobune.worker.buildpacks import NoStackDetected
from hakobune.worker.source import SourceError


class FailureKind(models.TextChoices):
    USER = "user", "the app or its source"
    TRANSIENT = "transient", "a passing fault"
    PLATFORM = "platform", "the platform"


# Attempts of one step at a transient failure, and the wait before each retry.
MAX_ATTEMPTS = 4
BACKOFF_SECONDS = (2, 8, 30)

_TRANSIENT_TYPES = (
    redis.ConnectionError,
    redis.TimeoutError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
    OperationalError,
    InterfaceError,
    google_errors.ServiceUnavailable,
    google_errors.TooManyRequests,
    google_errors.InternalServerError,
    google_errors.BadGateway,
    google_errors.GatewayTimeout,
    google_errors.DeadlineExceeded,
)


def classify(exc: BaseException) -> FailureKind:
    if getattr(exc, "platform_fault", False):
        return FailureKind.PLATFORM
    if getattr(exc, "transient", False):
        return FailureKind.TRANSIENT
    if isinstance(exc, RuntimeBackendError):
        return FailureKind.USER if exc.permanent else FailureKind.TRANSIENT
    if isinstance(exc, (SourceError, NoStackDetected)):
        return FailureKind.USER
    if hasattr(exc, "user_error"):  # the builders' errors
        return FailureKind.USER if exc.user_error else FailureKind.PLATFORM
    if isinstance(exc, docker.errors.APIError):
        return FailureKind.TRANSIENT if exc.is_server_error() else FailureKind.PLATFORM
    if isinstance(exc, docker.errors.DockerException) and "Error while fetching server API version" in str(exc):
        return FailureKind.TRANSIENT  # the engine is not answering (restarting)
    if isinstance(exc, _TRANSIENT_TYPES):
        return FailureKind.TRANSIENT
    return FailureKind.PLATFORM


def backoff(attempt: int) -> int:
    """Seconds to wait before attempt `attempt + 1`."""
    return BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS)) - 1]


class RetryStep(Exception):
    """Raised by a pipeline action when its step should be tried again after
    `countdown` seconds; the task layer hands it to Celery's retry."""

    def __init__(self, countdown: int, reason: str):
        super().__init__(reason)
        self.countdown = countdown
        self.reason = reason
