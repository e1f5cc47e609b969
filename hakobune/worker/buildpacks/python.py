"""Python web apps: a requirements.txt beside a module that makes a WSGI app."""

from __future__ import annotations

import re
from pathlib import Path

from .plan import BuildPlan, Detection

NAME = "Python"
LOOKS_FOR = "requirements.txt beside a module that creates a web app (for example app.py with Flask)"

GUNICORN = "gunicorn==23.0.0"
# Modules looked at first, in this order; then any other top-level module.
LIKELY_MODULES = ("app.py", "main.py", "wsgi.py", "application.py", "server.py")
FLASK_APP = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*=\s*Flask\s*\(", re.MULTILINE)
WSGI_CALLABLE = re.compile(r"^(?P<name>application|app)\s*=", re.MULTILINE)
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", re.MULTILINE)


def detect(src: Path) -> Detection | None:
    requirements = src / "requirements.txt"
    if not requirements.is_file():
        return None
    required = {name.lower().replace("_", "-") for name in REQUIREMENT_NAME.findall(_read(requirements))}
    found = _find_wsgi_app(src)
    if found is None:
        return None
    module, variable, framework = found
    install = "python3 -m venv /opt/venv && pip install -r requirements.txt"
    if "gunicorn" not in required:
        install += f" {GUNICORN}"
    plan = BuildPlan(
        stack="python",
        dependency_files=("requirements.txt",),
        install_commands=(install,),
        start_command=(
            "gunicorn --bind 0.0.0.0:$PORT --workers ${WEB_CONCURRENCY:-2} "
            f"--access-logfile - {module}:{variable}"
        ),
        env={
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_CACHE_DIR": "1",
            "VIRTUAL_ENV": "/opt/venv",
            "PATH": "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        },
    )
    reason = f"found requirements.txt and {module}.py creating a {framework} app named `{variable}`"
    return Detection(stack="python", reason=reason, plan=plan)


def _find_wsgi_app(src: Path) -> tuple[str, str, str] | None:
    candidates = [src / name for name in LIKELY_MODULES if (src / name).is_file()]
    candidates += sorted(p for p in src.glob("*.py") if p.name not in LIKELY_MODULES and p.is_file())
    for path in candidates:
        text = _read(path)
        match = FLASK_APP.search(text)
        if match:
            return path.stem, match["name"], "Flask"
    for path in candidates:
        text = _read(path)
        match = WSGI_CALLABLE.search(text)
        if match and ("def application" in text or "wsgi" in text.lower()):
            return path.stem, match["name"], "WSGI"
    return None


def _read(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(512 * 1024)
    except OSError:
        return ""
