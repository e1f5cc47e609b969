"""The lease a worker holds on a claimed step while it runs it: a thread that
renews the claim every STEP_HEARTBEAT_SECONDS (state.renew). A worker that
dies (kill -9, out of memory, a host restart) stops renewing, and the
sweeper (builds/sweeper.py) gives the step to another worker once the
lease is STEP_LEASE_SECONDS old. A release started without a build (a
rollback, a scale, new settings, a restart) holds the same kind of lease
(services/releases.py, Lease with its own renewal)."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connection

from typing import Callable

from .state import renew

logger = logging.getLogger(__name__)


class Lease:
    """Renews a lease while the `with` block runs: `renew()` returns False
    once the work is no longer this worker's, and `lost` is then set."""

    def __init__(self, name: str, renew_fn: Callable[[], bool], *, every: float | None = None):
        self.name = name
        self.renew_fn = renew_fn
        self.every = float(every if every is not None else settings.STEP_HEARTBEAT_SECONDS)
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self._thread = threading.Thread(target=self._run, name=f"hakobune-lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    if not self.renew_fn():
                        self.lost = True
                        # Usually the work has just moved on; else the sweeper
                        # took it back from a worker it thought dead.
                        logger.info("%s is no longer this worker's", self.name)
                        return
                except Exception:  # noqa: BLE001 - a missed renewal is not fatal; the lease has slack
                    logger.exception("could not renew the lease of %s", self.name)
        finally:
            connection.close()  # this thread's own database connection


class Heartbeat(Lease):
    """Renews the lease of one claimed step of a build while the `with` block
    runs. `lost` is set once the step is no longer this worker's (the build
    moved on or ended, or the sweeper took the step back)."""

    def __init__(self, build_id: int, status: str, *, every: float | None = None):
        self.build_id = build_id
        self.status = status
        super().__init__(f"build {build_id}'s {status} step", lambda: renew(build_id, status), every=every)
