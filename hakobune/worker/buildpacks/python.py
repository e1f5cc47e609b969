"""Python web apps: dependencies from requirements.txt, pyproject.toml (with
uv.lock, poetry.lock or plain PEP 621), or a Pipfile; the start command from
the framework the code uses (Django, Flask, FastAPI, any WSGI app), else
`python main.py` / `python app.py`.

An app of the standard library alone has no dependency file: it is Python
when a Procfile's `web:` line starts it with python (or names one of its .py
files), or when its main.py or app.py serves HTTP itself (http.server,
wsgiref, socketserver)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ._files import is_file, read_json, read_text, read_toml, walk
from .plan import BuildPlan, Detection

NAME = "Python"
KEY = "python"
LOOKS_FOR = (
    "requirements.txt, pyproject.toml (with uv.lock, poetry.lock or [project] dependencies) or a Pipfile, "
    "beside a module that creates a web app (Django's manage.py, app.py with Flask or FastAPI, or main.py); "
    "or, with no dependency file, a main.py or app.py that serves HTTP with the standard library, or a Procfile "
    "whose `web:` line starts a .py file"
)

# Versions Hakobune installs when the app does not bring its own.
GUNICORN = "gunicorn==23.0.0"
UVICORN = "uvicorn==0.34.0"
UV = "uv==0.7.13"
POETRY = "poetry==2.1.3"

# Modules looked at first, in this order; then any other top-level module.
LIKELY_MODULES = ("app.py", "main.py", "wsgi.py", "application.py", "server.py", "api.py")
FLASK_APP = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*=\s*Flask\s*\(", re.MULTILINE)
FASTAPI_APP = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*=\s*(?:fastapi\.)?FastAPI\s*\(", re.MULTILINE)
WSGI_CALLABLE = re.compile(r"^(?P<name>application|app)\s*=", re.MULTILINE)
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", re.MULTILINE)
DJANGO_SETTINGS = re.compile(r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"](?P<module>[\w.]+)['"]""")
VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)?)")
# What a module of the standard library alone serves HTTP with.
SERVES_HTTP = re.compile(r"^\s*(?:from|import)\s+(?:http\.server|wsgiref|socketserver)\b", re.MULTILINE)
# A Procfile command that runs Python: `python3 -u web.py`, `PYTHONPATH=. python -m site`.
RUNS_PYTHON = re.compile(r"^(?:[A-Za-z_]\w*=\S*\s+)*(?:exec\s+)?(?:\S*/)?python(?:3(?:\.\d+)?)?(?:\s|$)")
PY_FILE = re.compile(r"(?:^|\s)(?:\./)?(?P<name>[\w-]+\.py)\b")
# runtime.txt (Heroku's): python-3.12.4
RUNTIME_TXT = re.compile(r"^\s*python-(?P<version>\d+\.\d+(?:\.\d+)?)\s*$")

VENV_ENV = {
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_CACHE_DIR": "1",
    "VIRTUAL_ENV": "/opt/venv",
    "PATH": "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
NEW_VENV = "python3 -m venv /opt/venv"


def detect(src: Path, *, start_command: str = "") -> Detection | None:
    """With `start_command` (a Procfile's web line), dependencies alone are
    enough: the command says how to start the app."""
    manifest = _dependencies(src)
    if manifest is None:
        return _without_dependencies(src, start_command)
    found = _find_app(src, manifest)
    if found is None and start_command:
        found = ("", start_command, "a start command given by the app", [], [])
    if found is None:
        return None
    server, start, app_words, build_commands, notes = found

    install = manifest.install
    if server:
        name = server.split("==")[0]
        if name not in manifest.names:
            if manifest.add_command == "pip install" and " && pip install " in install:
                install += f" {server}"  # one pip run
            else:
                install += f" && {manifest.add_command} {server}"
    env = dict(VENV_ENV)
    env.update(manifest.env)
    version, version_file = _python_version(src, manifest)
    plan = BuildPlan(
        stack="python",
        dependency_files=manifest.files,
        install_commands=(install,),
        build_commands=tuple(build_commands),
        start_command=start,
        env=env,
        language_version=version,
        sources={"language_version": version_file} if version else {},
        notes=tuple(notes),
    )
    reason = f"found {manifest.description} and {app_words}"
    if version:
        reason += f"; it asks for Python {version} ({version_file})"
    return Detection(stack="python", reason=reason, plan=plan)


BUILD_LOOKS_FOR = "requirements.txt, pyproject.toml or a Pipfile (its dependencies installed)"


def build_steps(src: Path) -> tuple[BuildPlan, str] | None:
    """Python's part of an app built with more than one language: its
    dependencies installed; the other language starts the app."""
    manifest = _dependencies(src)
    if manifest is None:
        return None
    version, version_file = _python_version(src, manifest)
    plan = BuildPlan(stack="python", start_command="", dependency_files=manifest.files,
                     install_commands=(manifest.install,), env={**VENV_ENV, **manifest.env},
                     language_version=version, sources={"language_version": version_file} if version else {})
    reason = f"found {manifest.description}, installed"
    if version:
        reason += f"; it asks for Python {version} ({version_file})"
    return plan, reason


def _without_dependencies(src: Path, start_command: str) -> Detection | None:
    """An app of the standard library alone: started by its Procfile's python
    command, or by its main.py/app.py when that serves HTTP."""
    if start_command:
        named = PY_FILE.search(start_command)
        if not (RUNS_PYTHON.match(start_command.strip()) or (named and is_file(src, named["name"]))):
            return None
        if not any(p.is_file() and not p.is_symlink() for p in src.glob("*.py")) and not named:
            return None
        start, words = start_command, f"a start command that runs Python (`{start_command}`)"
    else:
        name = next((n for n in ("main.py", "app.py") if SERVES_HTTP.search(read_text(src, n))), None)
        if name is None:
            return None
        start = f"python {name}"
        words = (f"{name} serving HTTP with the standard library (started with `python {name}`; it must listen "
                 "on 0.0.0.0 and the port in $PORT)")
    manifest = _Manifest("no dependency file (the standard library only)", (), NEW_VENV, [])
    version, version_file = _python_version(src, manifest)
    plan = BuildPlan(
        stack="python",
        install_commands=(NEW_VENV,),
        start_command=start,
        env=dict(VENV_ENV),
        language_version=version,
        sources={"language_version": version_file} if version else {},
        notes=("Hakobune found no requirements.txt or pyproject.toml, so nothing is installed: add one when the "
               "app needs a package from PyPI.",),
    )
    reason = f"found {manifest.description} and {words}"
    if version:
        reason += f"; it asks for Python {version} ({version_file})"
    return Detection(stack="python", reason=reason, plan=plan)


class _Manifest:
    def __init__(self, description, files, install, names, *, env=None, add_command="pip install", raw=None):
        self.description = description
        self.files = tuple(files)
        self.install = install
        self.names = {_normalise(n) for n in names}
        self.env = env or {}
        self.add_command = add_command
        self.raw = raw or {}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dependencies(src: Path) -> _Manifest | None:
    pyproject = read_toml(src, "pyproject.toml") if is_file(src, "pyproject.toml") else None
    pyproject_names = _pyproject_names(pyproject or {})
    with_version_file = ("pyproject.toml",) + ((".python-version",) if is_file(src, ".python-version") else ())

    if pyproject is not None and is_file(src, "uv.lock"):
        return _Manifest(
            "pyproject.toml with uv.lock (uv)",
            ("pyproject.toml", "uv.lock"),
            # uv lives in its own venv so that `uv sync` (which makes the app's venv
            # match the lock exactly) does not remove it.
            f"python3 -m venv /opt/uv && /opt/uv/bin/pip install {UV} && {NEW_VENV} "
            "&& /opt/uv/bin/uv sync --frozen --no-dev --no-install-project",
            pyproject_names,
            env={"UV_PROJECT_ENVIRONMENT": "/opt/venv", "UV_PYTHON_DOWNLOADS": "never", "UV_LINK_MODE": "copy",
                 "UV_NO_CACHE": "1"},
            add_command="/opt/uv/bin/uv pip install --python /opt/venv/bin/python",
            raw=pyproject,
        )
    if pyproject is not None and is_file(src, "poetry.lock"):
        specs = _poetry_lock_specs(src)
        if specs is not None:
            # The locked versions, installed by pip: Poetry itself is not needed to
            # run the app, and pip needs only PyPI's simple index.
            install = NEW_VENV + (f" && pip install --no-deps {' '.join(shlex.quote(s) for s in specs)}" if specs else "")
            return _Manifest(
                "pyproject.toml with poetry.lock (Poetry; its locked versions installed with pip)",
                ("pyproject.toml", "poetry.lock"),
                install,
                pyproject_names,
                raw=pyproject,
            )
    if pyproject is not None and "poetry" in (pyproject.get("tool") or {}):
        return _Manifest(
            "pyproject.toml for Poetry (no poetry.lock: versions are resolved at build time)",
            ("pyproject.toml",),
            # Poetry in its own venv; it installs into the active one (VIRTUAL_ENV).
            f"python3 -m venv /opt/poetry && /opt/poetry/bin/pip install {POETRY} && {NEW_VENV} "
            "&& /opt/poetry/bin/poetry install --no-root --only main --no-interaction",
            pyproject_names,
            env={"POETRY_VIRTUALENVS_CREATE": "false", "POETRY_NO_INTERACTION": "1"},
            raw=pyproject,
        )
    if is_file(src, "requirements.txt"):
        names = REQUIREMENT_NAME.findall(read_text(src, "requirements.txt"))
        return _Manifest(
            "requirements.txt",
            ("requirements.txt",),
            f"{NEW_VENV} && pip install -r requirements.txt",
            names,
            raw=pyproject or {},
        )
    if is_file(src, "Pipfile"):
        pipfile = read_toml(src, "Pipfile") or {}
        lock = read_json(src, "Pipfile.lock") if is_file(src, "Pipfile.lock") else None
        if lock and isinstance(lock.get("default"), dict):
            specs = [f"{name}{info.get('version', '')}" for name, info in sorted(lock["default"].items())
                     if isinstance(info, dict)]
            files, description = ("Pipfile", "Pipfile.lock"), "Pipfile.lock"
        else:
            packages = pipfile.get("packages") or {}
            specs = [name if spec in ("*", "") or not isinstance(spec, str) else f"{name}{spec}"
                     for name, spec in sorted(packages.items())]
            files, description = ("Pipfile",), "a Pipfile"
        install = NEW_VENV + (f" && pip install {' '.join(shlex.quote(s) for s in specs)}" if specs else "")
        return _Manifest(description, files, install, [re.split(r"[<>=!~\[; ]", s)[0] for s in specs],
                         raw={"pipfile": pipfile})
    if pyproject is not None and isinstance((pyproject.get("project") or {}).get("dependencies"), list):
        specs = [s for s in pyproject["project"]["dependencies"] if isinstance(s, str)]
        install = NEW_VENV + (f" && pip install {' '.join(shlex.quote(s) for s in specs)}" if specs else "")
        return _Manifest("pyproject.toml ([project] dependencies)", with_version_file, install, pyproject_names,
                         raw=pyproject)
    return None


def _poetry_lock_specs(src: Path) -> list[str] | None:
    """`name==version ; markers` of the main group's packages, or None when the
    lock cannot be read."""
    lock = read_toml(src, "poetry.lock")
    if lock is None or not isinstance(lock.get("package"), list):
        return None
    specs = []
    for package in lock["package"]:
        if not isinstance(package, dict) or not package.get("name") or not package.get("version"):
            continue
        groups = package.get("groups") or ([package["category"]] if package.get("category") else ["main"])
        if "main" not in groups:
            continue
        if (package.get("source") or {}).get("type") in ("directory", "file", "git", "url"):
            return None  # not installable by name and version: leave it to Poetry
        markers = package.get("markers")
        if isinstance(markers, dict):
            markers = markers.get("main")
        spec = f"{package['name']}=={package['version']}"
        specs.append(f"{spec} ; {markers}" if isinstance(markers, str) and markers else spec)
    return specs


def _pyproject_names(pyproject: dict) -> list[str]:
    names = []
    for spec in (pyproject.get("project") or {}).get("dependencies") or []:
        if isinstance(spec, str):
            match = REQUIREMENT_NAME.match(spec)
            if match:
                names.append(match.group(1))
    poetry = ((pyproject.get("tool") or {}).get("poetry") or {}).get("dependencies") or {}
    names += [name for name in poetry if name.lower() != "python"]
    return names


def _python_version(src: Path, manifest: _Manifest) -> tuple[str, str]:
    """The Python version the app asks for, and the file that asks."""
    pinned = read_text(src, ".python-version").strip().splitlines()
    if pinned and VERSION.search(pinned[0]):
        return VERSION.search(pinned[0]).group(1), ".python-version"
    runtime = RUNTIME_TXT.match(read_text(src, "runtime.txt").strip())
    if runtime:
        return runtime["version"], "runtime.txt"
    requires = (manifest.raw.get("project") or {}).get("requires-python")
    if isinstance(requires, str) and requires.strip():
        return requires.strip(), "pyproject.toml"
    pipfile_version = ((manifest.raw.get("pipfile") or {}).get("requires") or {}).get("python_version")
    if isinstance(pipfile_version, str):
        return pipfile_version, "Pipfile"
    return "", ""


def _candidates(src: Path) -> list[Path]:
    paths = [src / name for name in LIKELY_MODULES if is_file(src, name)]
    paths += sorted(p for p in src.glob("*.py") if p.name not in LIKELY_MODULES and p.is_file() and not p.is_symlink())
    return paths


def _find_app(src: Path, manifest: _Manifest):
    """(server to add, start command, words, build commands, notes) or None."""
    django = _find_django(src, manifest)
    if django is not None:
        return django
    candidates = _candidates(src)
    texts = {path: read_text(src, path.name) for path in candidates}
    for path, text in texts.items():
        match = FASTAPI_APP.search(text)
        if match:
            return (
                UVICORN,
                f"uvicorn {path.stem}:{match['name']} --host 0.0.0.0 --port $PORT",
                f"{path.name} creating a FastAPI app named `{match['name']}` (served by uvicorn)",
                [],
                [],
            )
    for path, text in texts.items():
        match = FLASK_APP.search(text)
        if match:
            return (
                GUNICORN,
                _gunicorn(f"{path.stem}:{match['name']}"),
                f"{path.stem}.py creating a Flask app named `{match['name']}`",
                [],
                [],
            )
    for path, text in texts.items():
        match = WSGI_CALLABLE.search(text)
        if match and ("def application" in text or "wsgi" in text.lower()):
            return (
                GUNICORN,
                _gunicorn(f"{path.stem}:{match['name']}"),
                f"{path.stem}.py creating a WSGI app named `{match['name']}`",
                [],
                [],
            )
    for name in ("main.py", "app.py"):
        if is_file(src, name):
            return (
                "",
                f"python {name}",
                f"{name} (started with `python {name}`; it must listen on 0.0.0.0 and the port in $PORT)",
                [],
                [],
            )
    return None


def _gunicorn(target: str) -> str:
    return f"gunicorn --bind 0.0.0.0:$PORT --workers ${{WEB_CONCURRENCY:-2}} --access-logfile - {target}"


def _find_django(src: Path, manifest: _Manifest):
    if not is_file(src, "manage.py") and "django" not in manifest.names:
        return None
    manage = read_text(src, "manage.py")
    settings_module = None
    match = DJANGO_SETTINGS.search(manage)
    if match:
        settings_module = match["module"]
    wsgi_module = None
    if settings_module and "." in settings_module:
        package = settings_module.rsplit(".", 1)[0]
        if is_file(src, package.replace(".", "/") + "/wsgi.py"):
            wsgi_module = f"{package}.wsgi"
    if wsgi_module is None:
        for path in walk(src, "wsgi.py", max_depth=3):
            if "get_wsgi_application" in read_text(src, path.relative_to(src).as_posix()):
                wsgi_module = ".".join(path.relative_to(src).with_suffix("").parts)
                break
    if wsgi_module is None:
        return None
    if settings_module is None:
        settings_module = wsgi_module.rsplit(".", 1)[0] + ".settings"
    settings_file = settings_module.replace(".", "/") + ".py"
    settings_text = read_text(src, settings_file)
    build, notes = [], []
    words = f"manage.py with a Django project (`{wsgi_module}`, served by gunicorn)"
    if not is_file(src, "manage.py"):
        words = f"a Django project (`{wsgi_module}`, served by gunicorn)"
    if "STATIC_ROOT" in settings_text and is_file(src, "manage.py"):
        # Settings often read SECRET_KEY from the environment, which a build does not have.
        build.append(
            "SECRET_KEY=${SECRET_KEY:-collectstatic-at-build-time} DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-"
            "collectstatic-at-build-time} python manage.py collectstatic --noinput"
        )
        if "whitenoise" in manifest.names or "whitenoise" in settings_text.lower():
            words += "; static files collected at build time and served by WhiteNoise"
        else:
            words += "; static files collected at build time"
            notes.append(
                "Django does not serve static files (CSS, JavaScript, images) when DEBUG is off. Add WhiteNoise: "
                "put `whitenoise` in your dependencies and 'whitenoise.middleware.WhiteNoiseMiddleware' right "
                "after SecurityMiddleware in MIDDLEWARE."
            )
    else:
        notes.append(
            f"{settings_file if settings_text else 'Your settings'} has no STATIC_ROOT, "
            "so static files are not collected: set STATIC_ROOT = BASE_DIR / 'staticfiles' and add WhiteNoise "
            "to serve them."
        )
    return (GUNICORN, _gunicorn(f"{wsgi_module}:application"), words, build, notes)
