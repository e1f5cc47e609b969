"""Reading a person's source safely: bounded reads that follow no link (not
as the file, not as a folder on the way: see treefs), and no exceptions for
unreadable or malformed files (a detector that cannot read a file passes).
Every path is given as the app's folder and a path inside it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path, PurePosixPath

from .. import treefs

MAX_READ = 512 * 1024


def read_text(src: Path, name: str | PurePosixPath) -> str:
    """The first MAX_READ bytes of src/name as text; "" when it is missing, a
    link, reached through a link, or not a plain file."""
    try:
        return treefs.read_head(src, name, MAX_READ).decode("utf-8", errors="replace")
    except (treefs.UnsafePath, OSError):
        return ""


def read_json(src: Path, name: str | PurePosixPath) -> dict | None:
    text = read_text(src, name)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_toml(src: Path, name: str | PurePosixPath) -> dict | None:
    text = read_text(src, name)
    if not text:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def is_file(src: Path, name: str | PurePosixPath) -> bool:
    """src/name is a plain file, reached through no link."""
    return treefs.is_plain_file(src, name)


def first_file(src: Path, names) -> str | None:
    for name in names:
        if is_file(src, name):
            return name
    return None


def walk(src: Path, pattern: str, *, max_depth: int = 3, skip=("node_modules", ".git", ".venv", "venv", "__pycache__")):
    """Files matching `pattern` (a glob of one name) at most `max_depth` folders
    down, shallowest first, sorted; never following symlinks."""
    found = []
    frontier = [(src, 0)]
    while frontier:
        folder, depth = frontier.pop(0)
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_dir():
                if depth < max_depth and entry.name not in skip and not entry.name.startswith("."):
                    frontier.append((entry, depth + 1))
            elif entry.match(pattern):
                found.append(entry)
    return found
