"""A task of the fault tests only, loaded into a test's own worker with
`celery worker --include tests.faults.busy`: it holds its worker's slot."""

import time
from pathlib import Path

from celery import shared_task


@shared_task(name="tests.faults.busy.hold")
def hold(seconds: float, started: str, done: str, release: str) -> None:
    """Busy for `seconds`, or until the file `release` appears (so a test
    can end without waiting the time out)."""
    Path(started).touch()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not Path(release).exists():
        time.sleep(0.2)
    Path(done).touch()
