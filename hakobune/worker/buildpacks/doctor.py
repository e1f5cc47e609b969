"""What detection tells a beginner beyond the plan: why a folder is not an
app yet (what would make it one, and the nearest built-in sample), and
whether the app keeps its data in a SQLite file, which a container's
read-only files cannot keep."""

from __future__ import annotations

import re
from pathlib import Path

from ._files import is_file, read_text, walk

# The files each kind of app starts from, as the detectors look for them.
KEY_FILES = ("Dockerfile", "Procfile", "requirements.txt", "pyproject.toml", "go.mod", "pom.xml", "Gemfile",
             "composer.json", "index.html", "package.json")

# The built-in sample apps of the guided first deploy, by kind.
SAMPLE_FLASK, SAMPLE_FASTAPI, SAMPLE_DJANGO = "Flask", "FastAPI", "Django"
SAMPLE_NODE, SAMPLE_STATIC = "Node/Express", "static site"

SKIPPED = {".git", "node_modules", "venv", ".venv", "__pycache__", "vendor"}


def _files(src: Path, limit: int = 2000) -> list[Path]:
    """The folder's files (following no link), shallowest first, relative to it."""
    return [path.relative_to(src) for path in walk(Path(src), "*", max_depth=3, skip=tuple(SKIPPED))[:limit]]


def nearest_sample(src: Path) -> dict:
    """For a folder no detector recognised: what it holds (`found`), the file
    that would make it an app (`needs`), the nearest built-in sample
    (`sample`) and every file Hakobune looks for (`tried`). `found` is empty
    for a folder without files."""
    files = _files(src)
    tried = ", ".join(KEY_FILES)
    if not files:
        return {"found": "", "needs": "index.html", "sample": SAMPLE_STATIC, "tried": tried}
    by_suffix: dict[str, list[Path]] = {}
    for path in files:
        by_suffix.setdefault(path.suffix.lower(), []).append(path)
    shown = ", ".join(p.as_posix() for p in files[:5]) + (f" (+{len(files) - 5})" if len(files) > 5 else "")
    python = by_suffix.get(".py", [])
    if python:
        text = " ".join(read_text(src, p.as_posix())[:20000] for p in python[:20])
        if "django" in text:
            sample = SAMPLE_DJANGO
        elif "fastapi" in text.lower():
            sample = SAMPLE_FASTAPI
        else:
            sample = SAMPLE_FLASK
        return {"found": shown, "needs": "requirements.txt", "sample": sample, "tried": tried}
    if any(by_suffix.get(suffix) for suffix in (".js", ".mjs", ".cjs", ".ts")):
        return {"found": shown, "needs": "package.json", "sample": SAMPLE_NODE, "tried": tried}
    html = by_suffix.get(".html", []) + by_suffix.get(".htm", [])
    if html:
        return {"found": shown, "needs": "index.html", "sample": SAMPLE_STATIC, "tried": tried}
    return {"found": shown, "needs": "index.html", "sample": SAMPLE_STATIC, "tried": tried}


# -- SQLite ------------------------------------------------------------------------------------

SQLITE_SUFFIXES = (".sqlite3", ".sqlite")
_DJANGO_SQLITE = re.compile(r"django\.db\.backends\.sqlite3")
# 'NAME': BASE_DIR / 'db.sqlite3', or os.path.join(BASE_DIR, 'db.sqlite3')
_SQLITE_NAME = re.compile(
    r"""['"]NAME['"]\s*:\s*(?:BASE_DIR\s*/\s*['"](?P<a>[^'"]+)['"]|os\.path\.join\(\s*BASE_DIR\s*,\s*['"](?P<b>[^'"]+)['"]\s*\)"""
    r"""|['"](?P<c>[^'"]+\.sqlite3?)['"])"""
)


def sqlite_files(src: Path) -> list[str]:
    """The SQLite files the app keeps beside its code, relative to its folder:
    a Django settings file's sqlite3 database (Django's default DATABASES)
    and *.sqlite3 / *.sqlite files in the folder. Empty when it keeps none."""
    src = Path(src)
    found: list[str] = []
    for settings in walk(src, "settings.py", max_depth=3):
        relative = settings.relative_to(src).as_posix()
        text = read_text(src, relative)
        if not _DJANGO_SQLITE.search(text):
            continue
        match = _SQLITE_NAME.search(text)
        name = (match["a"] or match["b"] or match["c"]) if match else "db.sqlite3"
        # BASE_DIR is the project's folder, where manage.py is (the settings' grandparent).
        base = settings.parent.parent.relative_to(src)
        path = (base / name).as_posix() if not name.startswith("/") else name
        if path not in found:
            found.append(path)
    for path in _files(src):
        if path.suffix.lower() in SQLITE_SUFFIXES and path.as_posix() not in found:
            found.append(path.as_posix())
    return found[:5]


def sqlite_note(files: list[str]) -> str:
    """The plan's note, in the detector's English (the portal puts it into the
    reader's words from `sqlite_files`)."""
    return (
        f"This app keeps its data in a SQLite file ({', '.join(files)}). A container's files are read-only here and "
        "start afresh with every release, so the app cannot write that file, and nothing written would last. Keep "
        "the data where it lasts: a PostgreSQL add-on (attach one, read DATABASE_URL in the settings and run "
        "`python manage.py migrate` as the release command), or a volume for the folder that holds the file, with "
        "the setting pointed there."
    )


def has_key_file(src: Path) -> bool:
    return any(is_file(src, name) for name in KEY_FILES)
