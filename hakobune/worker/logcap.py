"""Bounds for logs a person's code writes, shared by build logs and runtime
logs: a line is cut at `max_chars` however long the text without a newline
grows (memory stays bounded), and a log stops being kept past its budget of
lines and bytes, saying how much was left out."""

from __future__ import annotations

from collections.abc import Iterator

MAX_LINE_CHARS = 4000


def cut(line: str, max_chars: int = MAX_LINE_CHARS) -> str:
    if len(line) <= max_chars:
        return line
    return f"{line[:max_chars]} … [{len(line) - max_chars:,} more characters not kept]"


class LineSplitter:
    """Turns chunks of text into lines. A line longer than `max_chars` is
    kept to its first `max_chars` characters: the rest is counted, not held,
    until its newline comes."""

    def __init__(self, max_chars: int = MAX_LINE_CHARS):
        self.max_chars = max_chars
        self._pending: list[str] = []
        self._pending_chars = 0
        self._dropped = 0

    def feed(self, text: str) -> Iterator[str]:
        while text:
            head, newline, text = text.partition("\n")
            self._add(head)
            if not newline:
                return
            yield self._take()

    def flush(self) -> Iterator[str]:
        """The last line, when the text did not end with a newline."""
        if self._pending_chars or self._dropped:
            yield self._take()

    def _add(self, piece: str) -> None:
        room = self.max_chars - self._pending_chars
        if room > 0:
            self._pending.append(piece[:room])
            self._pending_chars += min(len(piece), room)
        self._dropped += max(0, len(piece) - max(room, 0))

    def _take(self) -> str:
        line = "".join(self._pending).rstrip("\r")
        if self._dropped:
            line += f" … [{self._dropped:,} more characters not kept]"
        self._pending, self._pending_chars, self._dropped = [], 0, 0
        return line


class LogBudget:
    """How much of a log is kept: at most `max_lines` lines and `max_bytes`
    bytes; `admit` says whether a line is kept, `left_out` says what was not."""

    def __init__(self, max_lines: int, max_bytes: int):
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.lines = 0
        self.bytes = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0

    def admit(self, line: str) -> bool:
        size = len(line.encode("utf-8", "replace")) + 1
        if self.lines + 1 > self.max_lines or self.bytes + size > self.max_bytes:
            self.dropped_lines += 1
            self.dropped_bytes += size
            return False
        self.lines += 1
        self.bytes += size
        return True

    def left_out(self) -> str:
        if not self.dropped_lines:
            return ""
        return (f"… {self.dropped_lines:,} more lines ({self.dropped_bytes:,} bytes) were not kept: a log keeps "
                f"at most {self.max_lines:,} lines and {self.max_bytes // 1_000_000:,} MB.")
