"""Writing a build's log: lines are buffered briefly and inserted in batches,
so a chatty build does not make one write per line."""

import time

from .models import BuildLogLine

MAX_LINE_CHARS = 4000


class BuildLog:
    def __init__(self, build_id: int, *, flush_every: float = 0.25, batch: int = 100):
        self.build_id = build_id
        self.flush_every = flush_every
        self.batch = batch
        self.pending: list[str] = []
        self.last_flush = time.monotonic()

    def __call__(self, text: str) -> None:
        self.write(text)

    def write(self, text: str) -> None:
        for line in str(text).splitlines() or [""]:
            self.pending.append(line[:MAX_LINE_CHARS])
        if len(self.pending) >= self.batch or time.monotonic() - self.last_flush >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            BuildLogLine.objects.bulk_create(BuildLogLine(build_id=self.build_id, text=line) for line in self.pending)
            self.pending = []
        self.last_flush = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.flush()
