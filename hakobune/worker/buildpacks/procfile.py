"""Procfile hints: `web: <command>` sets the start command of whatever the
language detectors find. A Procfile without `web` is a user error."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ._files import is_file, read_text
from .plan import Detection, DetectionError, NoStackDetected

NAME = "Procfile"
KEY = "procfile"
LOOKS_FOR = "a Procfile with a `web:` line (its command starts the app; the language is detected as usual)"
LINE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)\s*:\s*(?P<command>.*\S)\s*$")


def processes(src: Path) -> dict[str, str] | None:
    """The Procfile's processes by name, or None when there is no Procfile."""
    if not is_file(src, "Procfile"):
        return None
    found = {}
    for line in read_text(src, "Procfile").splitlines():
        if line.strip().startswith("#"):
            continue
        match = LINE.match(line)
        if match:
            found.setdefault(match["name"], match["command"])
    return found


def detect(src: Path, *, detect_language: Callable[..., Detection]) -> Detection | None:
    """The Procfile's `web:` line over what `detect_language` (the language
    detectors that follow this one) finds."""
    found = processes(src)
    if found is None:
        return None
    if "web" not in found:
        names = ", ".join(f"`{name}`" for name in found) or "no processes"
        raise DetectionError(
            f"The Procfile has {names} but no `web` process, so Hakobune does not know how to start your web app. "
            "Add a line like `web: gunicorn app:app` (the command that serves HTTP on $PORT), or remove the Procfile."
        )
    try:
        detection = detect_language(src, start_command=found["web"])
    except NoStackDetected as exc:
        raise NoStackDetected(
            f"The Procfile says how to start the app (`web: {found['web']}`), but {exc}"
        ) from None
    plan = detection.plan.with_changes(
        start_command=found["web"], sources={**detection.plan.sources, "start_command": "Procfile"}
    )
    reason = f"{detection.reason}; the Procfile's `web:` line starts it (`{found['web']}`)"
    return Detection(stack=detection.stack, reason=reason, plan=plan)
