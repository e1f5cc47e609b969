"""Procfile hints: `web: <command>` sets the start command of whatever the
language detectors find; `release: <command>` is the release phase; every
other line is a process type (`worker: celery -A app worker`) that runs the
same image, not routed. A Procfile with workers and no `web` serves nothing
(it is not routed); one with no process at all is a user error."""

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
# The name of a process type: it names containers and appears in addresses.
PROCESS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
RELEASE = "release"


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


def check_process_name(name: str, where: str = "The Procfile") -> None:
    if not PROCESS_NAME.match(name):
        raise DetectionError(
            f"{where} names a process type {name!r}; a name is lower-case letters, digits and dashes, starting "
            "with a letter, at most 20 characters (like `worker`)."
        )


def detect(src: Path, *, detect_language: Callable[..., Detection]) -> Detection | None:
    """The Procfile's `web:` line over what `detect_language` (the language
    detectors that follow this one) finds, with its other process types and
    its release command."""
    found = processes(src)
    if found is None:
        return None
    others = {name: command for name, command in found.items() if name not in ("web", RELEASE)}
    for name in others:
        check_process_name(name)
    if not found:
        # A Procfile of no process at all (empty, comments, lines it cannot read).
        error = DetectionError(
            "The Procfile names no process, so Hakobune does not know what to run. Add a line like "
            "`web: gunicorn app:app` (a command that serves HTTP on $PORT) or `worker: python worker.py` (one that "
            "runs without a web address), or remove the Procfile to let Hakobune find the start command."
        )
        error.rule, error.params = "detect.procfile_empty", {}
        raise error
    if "web" not in found and not others:
        names = ", ".join(f"`{name}`" for name in found)
        error = DetectionError(
            f"The Procfile has {names} but no `web` process, so Hakobune does not know how to start your web app. "
            "Add a line like `web: gunicorn app:app` (the command that serves HTTP on $PORT), or remove the Procfile."
        )
        error.rule, error.params = "detect.procfile_no_web", {"names": names}
        raise error
    start = found.get("web") or next(iter(others.values()))
    try:
        detection = detect_language(src, start_command=start)
    except NoStackDetected as exc:
        raise NoStackDetected(
            f"The Procfile says how to start the app (`{'web' if 'web' in found else next(iter(others))}: {start}`), "
            f"but {exc}"
        ) from None
    plan = detection.plan.with_changes(
        start_command=start, sources={**detection.plan.sources, "start_command": "Procfile"},
        web="web" in found, processes=others, release_command=found.get(RELEASE, ""),
    )
    if "web" in found:
        reason = f"{detection.reason}; the Procfile's `web:` line starts it (`{found['web']}`)"
    else:
        reason = f"{detection.reason}; the Procfile has no `web:` line, so nothing is routed to it"
    if others:
        reason += "; other processes: " + ", ".join(f"`{name}`" for name in others)
    if found.get(RELEASE):
        reason += f"; release phase: `{found[RELEASE]}`"
    return Detection(stack=detection.stack, reason=reason, plan=plan)
