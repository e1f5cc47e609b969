"""The lease a worker holds on a claimed step while it runs it: a thread that
renews the claim every STEP_HEARTBEAT_SECONDS (state.renew). A worker that
dies (kill -9, out of memory, a host restart) stops renewing, and the
sweeper (builds/sweeper.py) gives the step to another worker once the
lease is STEP_LEASE_SECONDS old."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connection

from .state import renew

logger = logging.getLogger(__name__)


class Heartbeat:
    """Renews the lease of one claimed step while the `with` block runs.
    `lost` is set once the step is no longer this worker's (the build moved
    on or ended, or the sweeper took the step back)."""

    def __init__(self, build_id: int, status: str, *, every: float | None = None):
        self.build_id = build_id
        self.status = status
        self.every = float(every if every is not None else settings.STEP_HEARTBEAT_SECONDS)
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(
            target=self._run, name=f"hakobune-lease-{self.build_id}", daemon=True
        )
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
                    if not renew(self.build_id, self.status):
                        self.lost = True
                        # Usually the step has just moved the build on; else the
                        # sweeper took it back from a worker it thought dead.
                        logger.info("build %s: the %s step is no longer this worker's", self.build_id, self.status)
                        return
                except Exception:  # noqa: BLE001 - a missed renewal is not fatal; the lease has slack
                    logger.exception("build %s: could not renew the lease of its %s step", self.build_id,
                                     self.status)
        finally:
            connection.close()  # this thread's own database connection
