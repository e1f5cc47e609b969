"""Reading a person's source safely: bounded reads, no exceptions for
unreadable or malformed files (a detector that cannot read a file passes)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

MAX_READ = 512 * 1024


def read_text(path: Path) -> str:
    try:
        if path.is_symlink() or not path.is_file():
            return ""
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(MAX_READ)
    except OSError:
        return ""


def read_json(path: Path) -> dict | None:
    text = read_text(path)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_toml(path: Path) -> dict | None:
    text = read_text(path)
    if not text:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def is_file(src: Path, name: str) -> bool:
    path = src / name
    return path.is_file() and not path.is_symlink()


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
