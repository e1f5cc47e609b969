"""Stacks: the base image each language's apps are built on.

A stack is either the image configured for the language (``python:3.12-slim`` by
default), when this host has it or can pull it, or an image Hakobune builds itself
from Debian packages with debootstrap (``hakobune/stack-python:bookworm``), for hosts
that cannot reach any image registry.

The locally built stack is a plain Debian ``minbase`` root filesystem with the
language's packages, an unprivileged user ``app`` (uid/gid 10001, home /app) and,
when configured, the host's CA bundle (for HTTPS through an intercepting proxy). Its
root filesystem tarball is kept in the cache directory, so building it again after the
image was deleted only re-imports the tarball.

This module imports nothing of Django; it takes a Docker client and plain values.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from docker.utils import parse_repository_tag

from . import php_stack
from .builders.base import BuildError
from .buildpacks.java import MAVEN_METADATA, MAVEN_PLUGIN_PACKAGES, MAVEN_SETTINGS

__all__ = [
    "StackImage",
    "StackError",
    "StackRecipe",
    "RECIPES",
    "APP_UID",
    "APP_GID",
    "CA_BUNDLE_PATH",
    "VERSION_LABEL",
    "local_stack_ref",
    "SUITE_VERSIONS",
    "language_version",
    "image_present",
    "stack_version",
    "pull_image",
    "build_local_stack",
    "resolve_stack",
]

APP_UID = 10001
APP_GID = 10001
APP_HOME = "/app"
CA_BUNDLE_PATH = "/etc/ssl/certs/ca-certificates.crt"
LABEL_PREFIX = "org.hakobune.stack"
VERSION_LABEL = f"{LABEL_PREFIX}.version"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# How long a pull may wait for the registry before Hakobune gives up on it: the
# first answer from the daemon, then the longest silence between progress messages,
# then the whole pull. Docker's own pull has no timeout at all (a registry that
# accepts the connection and never answers would hang the build for ever).
PULL_TIMEOUT = 20.0
PULL_IDLE_TIMEOUT = 60.0
PULL_TOTAL_TIMEOUT = 900.0
DEBOOTSTRAP_TIMEOUT = 1800.0


@dataclass(frozen=True)
class StackImage:
    language: str  # "python"
    ref: str  # usable in a Dockerfile FROM line
    origin: str  # "registry" or "local"
    version: str  # human-readable, e.g. "Debian bookworm (12.11), Python 3.11.2"


class StackError(BuildError):
    """A stack could not be found or built; the message says what to do. One of
    the builders' BuildErrors: the platform's problem, not the app's
    (`user_error` False); `transient` when the Docker Engine failed."""

    def __init__(self, message: str, *, log_tail: list[str] | None = None, transient: bool = False):
        super().__init__(message, log_tail=log_tail, user_error=False, transient=transient)


@dataclass(frozen=True)
class StackRecipe:
    """How to build one language's stack from Debian packages."""

    language: str
    packages: tuple[str, ...]
    cmd: tuple[str, ...]
    # Run inside the root filesystem; prints the language's version.
    version_probe: tuple[str, ...]
    # Debian package whose version stands in when the probe cannot run.
    version_package: str
    display_name: str
    # Installed after debootstrap from ``<suite>-backports`` (newer toolchains
    # than the release carries, e.g. Go 1.23 on bookworm).
    backports_packages: tuple[str, ...] = ()
    # Installed after debootstrap with apt-get from the suite itself (packages with
    # many dependencies, which debootstrap's --include cannot order, like npm).
    apt_packages: tuple[str, ...] = ()
    # Prepended to PATH in the image (e.g. the backported Go's bin directory).
    path_prefix: str = ""
    # Files written into the root filesystem: (absolute path, content).
    files: tuple[tuple[str, str], ...] = ()
    # Shell scripts run inside the root filesystem once its packages and files are in
    # (a package's metadata written, data directories owned by a service's own user).
    post_install: tuple[str, ...] = ()
    # Installed with apt_packages on one suite only: (suite, packages) pairs, for
    # what a release splits into a package of its own (Rack 3's rackup on trixie).
    suite_packages: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def apt_packages_for(self, suite: str) -> tuple[str, ...]:
        return self.apt_packages + dict(self.suite_packages).get(suite, ())


# The types lighttpd sends files with (the static and PHP stacks).
LIGHTTPD_MIMETYPES = """\
mimetype.assign = (
  ".html" => "text/html; charset=utf-8", ".htm" => "text/html; charset=utf-8",
  ".css" => "text/css; charset=utf-8", ".js" => "text/javascript; charset=utf-8",
  ".mjs" => "text/javascript; charset=utf-8", ".json" => "application/json",
  ".map" => "application/json", ".txt" => "text/plain; charset=utf-8",
  ".xml" => "application/xml", ".svg" => "image/svg+xml", ".png" => "image/png",
  ".jpg" => "image/jpeg", ".jpeg" => "image/jpeg", ".gif" => "image/gif",
  ".webp" => "image/webp", ".avif" => "image/avif", ".ico" => "image/x-icon",
  ".woff" => "font/woff", ".woff2" => "font/woff2", ".ttf" => "font/ttf",
  ".otf" => "font/otf", ".wasm" => "application/wasm", ".pdf" => "application/pdf",
  ".webmanifest" => "application/manifest+json", ".mp4" => "video/mp4",
  ".webm" => "video/webm", ".mp3" => "audio/mpeg", "" => "application/octet-stream",
)
"""

# The static stack serves files with lighttpd: a mature, small, event-driven
# server from Debian (1.4.x), run unprivileged on $PORT with the configuration
# below and the document root in $SITE_ROOT. It logs to stdout/stderr, writes
# nothing outside /tmp (the instance's root filesystem is read-only) and also
# serves as the slim run stage of compiled apps (Go).
LIGHTTPD_CONF = """\
# Hakobune static stack: serves $SITE_ROOT on 0.0.0.0:$PORT.
server.modules = ("mod_access", "mod_indexfile", "mod_staticfile", "mod_accesslog")
server.document-root = env.SITE_ROOT
server.port = env.PORT
server.bind = "0.0.0.0"
server.tag = ""
server.upload-dirs = ("/tmp")
server.errorlog = "/dev/stderr"
accesslog.filename = "/dev/stdout"
index-file.names = ("index.html", "index.htm")
server.follow-symlink = "disable"
url.access-deny = ("~", ".inc")
# Dot-files and dot-folders (.git, .env, .hakobune) are never served.
$HTTP["url"] =~ "/\\." { url.access-deny = ("") }
static-file.exclude-extensions = (".php", ".pl", ".cgi")
""" + LIGHTTPD_MIMETYPES

# The add-ons' stacks run as the packages' own unprivileged users (postgres,
# redis), never as root; their data directories are made in the image owned by
# those users, so a fresh named volume mounted there starts with that owner.
POSTGRES_ENTRY = """\
#!/bin/sh
# Hakobune PostgreSQL add-on: initialise $PGDATA on first start, then serve.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
: "${PGDATA:=/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    "$bin/initdb" -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile="$pwfile" -E UTF8 \\
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses='' -k /tmp" -w start >/dev/null
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != "postgres" ]; then
        "$bin/createdb" -h /tmp -U "${POSTGRES_USER:-postgres}" "$POSTGRES_DB"
    fi
    "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    echo "PostgreSQL database initialised"
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -k /tmp
"""

RECIPES: dict[str, StackRecipe] = {
    "python": StackRecipe(
        language="python",
        packages=("python3", "python3-venv", "python3-pip", "ca-certificates"),
        cmd=("python3",),
        version_probe=("/usr/bin/python3", "-c", "import platform; print(platform.python_version())"),
        version_package="python3",
        display_name="Python",
    ),
    # Debian bookworm carries Node.js 18 and npm 9; bookworm-backports has no newer
    # Node.js. yarn and pnpm are installed from the npm registry by the build
    # plan of the apps that use them.
    "node": StackRecipe(
        language="node",
        packages=("nodejs", "ca-certificates"),
        apt_packages=("npm",),
        cmd=("node",),
        version_probe=("/bin/sh", "-c", 'echo "$(/usr/bin/node -p process.versions.node), npm $(/usr/bin/npm --version)"'),
        version_package="nodejs",
        display_name="Node.js",
    ),
    # bookworm's golang-go is 1.19; bookworm-backports carries 1.23.
    "go": StackRecipe(
        language="go",
        packages=("ca-certificates", "git"),
        backports_packages=("golang-1.23-go",),
        path_prefix="/usr/lib/go-1.23/bin",
        cmd=("go", "version"),
        version_probe=("/bin/sh", "-c", "/usr/lib/go-1.23/bin/go env GOVERSION | sed s/^go//"),
        version_package="golang-1.23-go",
        display_name="Go",
    ),
    # Apps built with two languages (hakobune.toml `languages`, .buildpacks):
    # Python to run, with Node.js and npm for the build of their assets (or the
    # other way round). Both from Debian, as on their own stacks.
    "python-node": StackRecipe(
        language="python-node",
        packages=("python3", "python3-venv", "python3-pip", "nodejs", "ca-certificates"),
        apt_packages=("npm",),
        cmd=("python3",),
        version_probe=("/bin/sh", "-c", "echo \"Python $(/usr/bin/python3 -c 'import platform; "
                       "print(platform.python_version())'), Node.js $(/usr/bin/node -p process.versions.node), "
                       "npm $(/usr/bin/npm --version)\""),
        version_package="python3",
        display_name="",
    ),
    # Java apps: Debian's JDK (17 on bookworm, 21 on trixie) and Maven, with the
    # Maven plugins Debian packages in /usr/share/maven-repo, which the global
    # settings.xml (java.MAVEN_SETTINGS) consults before MAVEN_REPOSITORY.
    "java": StackRecipe(
        language="java",
        packages=("ca-certificates",),
        apt_packages=("default-jdk-headless", "maven", *MAVEN_PLUGIN_PACKAGES),
        cmd=("java", "-version"),
        version_probe=("/bin/sh", "-c", "echo \"$(java -version 2>&1 | head -n 1 | cut -d'\"' -f2), "
                       "Maven $(dpkg-query -W -f '${Version}' maven | cut -d- -f1)\""),
        version_package="default-jdk-headless",
        display_name="Java",
        files=(("/etc/maven/settings.xml", MAVEN_SETTINGS),),
        post_install=(MAVEN_METADATA,),
    ),
    # Ruby with Bundler, and compilers and headers for gems with native code. Rack
    # (with rackup), Puma and WEBrick from Debian serve a config.ru without a Gemfile;
    # Rails (with the PostgreSQL and SQLite drivers) and Sinatra from Debian are the
    # gems of an app whose Gemfile names no source (`bundle install --local`).
    # Rails and its dependencies add about 50 MB to the image (bench/RESULTS.md).
    "ruby": StackRecipe(
        language="ruby",
        packages=("ca-certificates",),
        apt_packages=("ruby", "ruby-dev", "bundler", "build-essential", "git", "pkg-config", "libpq-dev",
                      "libsqlite3-dev", "libyaml-dev", "zlib1g-dev", "ruby-rack", "puma", "ruby-webrick",
                      "ruby-rails", "ruby-pg", "ruby-sqlite3", "ruby-sinatra"),
        suite_packages=(("trixie", ("ruby-rackup",)),),
        cmd=("irb",),
        version_probe=("/usr/bin/ruby", "-rbundler", "-e", 'print RUBY_VERSION, ", Bundler ", Bundler::VERSION'),
        version_package="ruby",
        display_name="Ruby",
    ),
    # PHP-FPM behind lighttpd (php_stack.py), Composer, and the extensions apps
    # most often need.
    "php": StackRecipe(
        language="php",
        packages=("ca-certificates",),
        apt_packages=("php-cli", "php-fpm", "php-mbstring", "php-xml", "php-curl", "php-pgsql", "php-mysql",
                      "php-sqlite3", "php-intl", "php-zip", "php-gd", "php-bcmath", "composer", "unzip", "git",
                      "lighttpd"),
        cmd=("php", "-a"),
        version_probe=("/bin/sh", "-c", "echo \"$(php -r 'echo PHP_VERSION;'), Composer $(composer --version "
                       "--no-ansi 2>/dev/null | sed -n 's/^Composer version \\([^ ]*\\).*/\\1/p')\""),
        version_package="php-cli",
        display_name="PHP",
        files=((php_stack.STATIC_CONF_PATH, LIGHTTPD_CONF), (php_stack.LIGHTTPD_CONF_PATH, php_stack.LIGHTTPD_CONF),
               (php_stack.FPM_CONF_PATH, php_stack.FPM_CONF),
               (php_stack.SERVER_PATH, php_stack.SERVER_SCRIPT),
               *((f"/usr/local/bin/{name}", php_stack.HEROKU_SERVER_SCRIPT) for name in php_stack.HEROKU_SERVERS)),
    ),
    "static": StackRecipe(
        language="static",
        packages=("lighttpd", "ca-certificates"),
        cmd=("lighttpd", "-D", "-f", "/etc/lighttpd/hakobune.conf"),
        version_probe=("/bin/sh", "-c", "/usr/sbin/lighttpd -v | sed -e 's,^lighttpd/,,' -e 's/ .*//'"),
        version_package="lighttpd",
        display_name="lighttpd",
        files=(("/etc/lighttpd/hakobune.conf", LIGHTTPD_CONF),),
    ),
    # Add-ons (hakobune/platform/addons). bookworm carries PostgreSQL 15 and Redis 7.0.
    "postgres": StackRecipe(
        language="postgres",
        packages=("postgresql-15", "ca-certificates"),
        cmd=("/bin/sh", "/usr/local/lib/hakobune/postgres-entry.sh"),
        version_probe=("/bin/sh", "-c", "/usr/lib/postgresql/*/bin/postgres --version | cut -d' ' -f3"),
        version_package="postgresql-15",
        display_name="PostgreSQL",
        files=(("/usr/local/lib/hakobune/postgres-entry.sh", POSTGRES_ENTRY),),
        post_install=(
            "rm -rf /var/lib/postgresql/*/main /etc/postgresql/*/main\n"
            "mkdir -p /var/lib/postgresql/data\n"
            "chown postgres:postgres /var/lib/postgresql/data\n"
            "chmod 700 /var/lib/postgresql/data\n",
        ),
    ),
    "redis": StackRecipe(
        language="redis",
        packages=("redis-server", "redis-tools", "ca-certificates"),
        cmd=("redis-server",),
        version_probe=("/bin/sh", "-c", "/usr/bin/redis-server --version | sed 's/.* v=//; s/ .*//'"),
        version_package="redis-server",
        display_name="Redis",
        post_install=("mkdir -p /data\nchown redis:redis /data\nchmod 700 /data\n",),
    ),
}


# The language versions Debian's releases carry (what a stack built from that
# suite has), to tell before a stack is built which version it will have. A
# built stack's own label (VERSION_LABEL) wins over this.
SUITE_VERSIONS: dict[str, dict[str, str]] = {
    "bookworm": {"python": "3.11.2", "node": "18.20.4", "go": "1.23.5", "java": "17.0", "ruby": "3.1.2", "php": "8.2"},
    "trixie": {"python": "3.13.5", "node": "20.19.2", "go": "1.24", "java": "21.0", "ruby": "3.3.8", "php": "8.4"},
}


def language_version(description: str, language: str) -> str:
    """The language's version in a stack's description ("Debian bookworm
    (12.15), Python 3.11.2" -> "3.11.2"); "" when it does not say."""
    recipe = RECIPES.get(language)
    name = recipe.display_name if recipe else language
    if not name:
        return ""
    match = re.search(rf"{re.escape(name)} v?(\d+\.\d+(?:\.\d+)?)", description or "")
    return match.group(1) if match else ""


def _print(line):
    print(line, flush=True)


def local_stack_ref(language: str, suite: str = "bookworm") -> str:
    """The tag of the locally built stack, e.g. ``hakobune/stack-python:bookworm``."""
    return f"hakobune/stack-{language}:{suite}"


def image_present(client: docker.DockerClient, ref: str) -> bool:
    if not ref:
        return False
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:
        # "invalid reference format" and friends: a configured name that can never exist.
        if getattr(exc, "status_code", None) in (400, 404):
            return False
        raise
    return True


def stack_version(client: docker.DockerClient, ref: str) -> str:
    """A human-readable version for an image: the label Hakobune stamps on its own
    stacks, else the language version an official image declares, else the image id."""
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        raise StackError(f"The image {ref} is not on this host.") from None
    config = image.attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    if labels.get(VERSION_LABEL):
        return labels[VERSION_LABEL]
    env = dict(item.split("=", 1) for item in (config.get("Env") or []) if "=" in item)
    parts = []
    for key, name in (("PYTHON_VERSION", "Python"), ("NODE_VERSION", "Node.js"), ("GOLANG_VERSION", "Go")):
        if env.get(key):
            parts.append(f"{name} {env[key]}")
    os_name = labels.get("org.opencontainers.image.version")
    if os_name:
        parts.insert(0, os_name)
    short_id = image.short_id.split(":", 1)[-1]
    if parts:
        return f"{', '.join(parts)} ({ref})"
    return f"{ref} (image {short_id})"


# --- pulling ------------------------------------------------------------------------


def pull_image(
    client: docker.DockerClient,
    ref: str,
    *,
    timeout: float = PULL_TIMEOUT,
    idle_timeout: float = PULL_IDLE_TIMEOUT,
    total_timeout: float = PULL_TOTAL_TIMEOUT,
    log=_print,
) -> tuple[bool, str]:
    """Pull ``ref``, bounded in time. Returns ``(True, "")`` or ``(False, reason)``.

    The Docker SDK pulls with no timeout, so the pull runs in a daemon thread that
    feeds a queue; this side gives up when the daemon says nothing for ``timeout``
    seconds at first (registry unreachable), ``idle_timeout`` seconds later (a stalled
    download), or after ``total_timeout`` seconds overall. A pull given up on may go on
    in the daemon; nothing waits for it."""
    repository, tag = parse_repository_tag(ref)
    events: queue.Queue = queue.Queue()
    done = object()

    def run():
        try:
            for message in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                events.put(message)
        except Exception as exc:  # noqa: BLE001 - handed over to the waiting side
            events.put(exc)
        events.put(done)

    thread = threading.Thread(target=run, name=f"pull {ref}", daemon=True)
    started = time.monotonic()
    thread.start()
    log(f"Pulling {ref} (giving up after {timeout:g}s without an answer)")
    wait = timeout
    answered = False
    noisy = {"Downloading", "Extracting", "Waiting", "Verifying Checksum"}
    while True:
        remaining = total_timeout - (time.monotonic() - started)
        if remaining <= 0:
            return False, f"pulling {ref} took longer than {total_timeout:g}s"
        try:
            event = events.get(timeout=min(wait, remaining))
        except queue.Empty:
            if not answered:
                return False, f"the registry did not answer within {timeout:g}s"
            return False, f"the pull of {ref} stalled for {wait:g}s"
        if event is done:
            break
        if isinstance(event, Exception):
            return False, _docker_reason(event)
        if event.get("error"):
            return False, str(event.get("error")).strip()
        answered = True
        wait = idle_timeout
        status = event.get("status")
        if status and status not in noisy:
            ident = event.get("id")
            log(f"  {ident}: {status}" if ident and ident != tag else f"  {status}")
    if not image_present(client, ref):
        return False, f"the daemon finished pulling {ref} but the image is not there"
    return True, ""


def _docker_reason(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation).strip()
    return str(exc).strip() or exc.__class__.__name__


# --- building from Debian -----------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(lock_path: Path, log):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"Another process is building this stack; waiting for it ({lock_path})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (debootstrap mounts /proc and /sys in its
    target while it runs, and leaves them there when it is killed)."""
    prefix = str(path.resolve())
    found = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 4:
                    point = fields[4].replace("\\040", " ")
                    if point == prefix or point.startswith(prefix + "/"):
                        found.append(point)
    except OSError:
        pass
    # Deepest first.
    return sorted(found, key=len, reverse=True)


def _remove_tree(path: Path, log) -> None:
    """Remove a build directory, unmounting what debootstrap left mounted in it first;
    never recurse into a mounted /proc or /sys."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    left = _mounts_under(path)
    if left:
        log(f"Warning: not removing {path}: still mounted: {', '.join(left)}")
        return
    shutil.rmtree(path, ignore_errors=True)


def _find_debootstrap() -> str | None:
    return shutil.which("debootstrap") or shutil.which(
        "debootstrap", path="/usr/local/sbin:/usr/sbin:/sbin"
    )


def _die_with_parent():  # pragma: no cover - runs in the child between fork and exec
    """Have the kernel send SIGTERM to debootstrap when the process that started it
    dies, so a killed worker leaves no debootstrap writing into a directory the next
    build will remove (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _run_streaming(args: list[str], *, log, timeout: float, env=None) -> tuple[int, list[str]]:
    """Run an argument list, passing each output line to ``log``; returns the exit
    status and the last lines of output."""
    tail: list[str] = []
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        errors="replace",
        bufsize=1,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            del tail[:-20]
            log(f"  {line}")
        returncode = proc.wait()
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return returncode, tail


def _append_line(path: Path, line: str, *, if_missing_prefix: str) -> None:
    text = path.read_text() if path.exists() else ""
    if any(existing.startswith(if_missing_prefix) for existing in text.splitlines()):
        return
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text + line + "\n")


def _add_app_user(rootfs: Path) -> None:
    etc = rootfs / "etc"
    _append_line(etc / "group", f"app:x:{APP_GID}:", if_missing_prefix="app:")
    _append_line(
        etc / "passwd",
        f"app:x:{APP_UID}:{APP_GID}:Hakobune app:{APP_HOME}:/usr/sbin/nologin",
        if_missing_prefix="app:",
    )
    if (etc / "shadow").exists():
        days = int(time.time() // 86400)
        _append_line(etc / "shadow", f"app:*:{days}:0:99999:7:::", if_missing_prefix="app:")
    if (etc / "gshadow").exists():
        _append_line(etc / "gshadow", "app:!::", if_missing_prefix="app:")
    home = rootfs / APP_HOME.lstrip("/")
    home.mkdir(mode=0o755, exist_ok=True)
    os.chown(home, APP_UID, APP_GID)


def _slim_rootfs(rootfs: Path) -> None:
    """Drop what a container never needs: package caches and lists, documentation,
    logs, and the host's name and resolver settings (Docker supplies its own)."""
    globs = [
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/archives/partial/*",
        "var/lib/apt/lists/*",
        "var/cache/debconf/*-old",
        "var/lib/dpkg/*-old",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/lintian/*",
        "usr/share/linda/*",
        "var/log/*.log",
        "var/log/apt/*",
        "root/.cache",
        "tmp/*",
        "var/tmp/*",
    ]
    for pattern in globs:
        for item in rootfs.glob(pattern):
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    item.unlink()
    locale_dir = rootfs / "usr/share/locale"
    if locale_dir.is_dir():
        for item in locale_dir.iterdir():
            if item.name != "locale.alias":
                if item.is_dir() and not item.is_symlink():
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        item.unlink()
    # Keep later installs as small, the way the slim images do.
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/hakobune-slim").write_text(
        "# Hakobune stack: no documentation in images\n"
        "path-exclude=/usr/share/doc/*\n"
        "path-include=/usr/share/doc/*/copyright\n"
        "path-exclude=/usr/share/man/*\n"
        "path-exclude=/usr/share/info/*\n"
        "path-exclude=/usr/share/locale/*\n"
        "path-include=/usr/share/locale/locale.alias\n"
    )
    (rootfs / "etc/apt/apt.conf.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/apt/apt.conf.d/90hakobune").write_text(
        'APT::Install-Recommends "false";\n'
        'APT::Install-Suggests "false";\n'
        'Acquire::Languages "none";\n'
    )
    # Docker bind-mounts its own resolv.conf, hostname and hosts over these; do not
    # ship the build host's.
    for name, content in (("etc/resolv.conf", ""), ("etc/hostname", "localhost\n")):
        path = rootfs / name
        if path.is_symlink():
            path.unlink()
        path.write_text(content)
    # /dev and /proc are supplied by the container runtime.
    for name in ("dev", "proc", "sys"):
        path = rootfs / name
        if path.exists() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(mode=0o755, exist_ok=True)
    # debootstrap's own leftovers, present when the second stage stopped half way.
    shutil.rmtree(rootfs / "debootstrap", ignore_errors=True)


def _package_version(rootfs: Path, package: str) -> str | None:
    status = rootfs / "var/lib/dpkg/status"
    try:
        text = status.read_text(errors="replace")
    except OSError:
        return None
    for stanza in text.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", stanza, re.M):
            match = re.search(r"^Version: (?:\d+:)?([^\s-]+)", stanza, re.M)
            if match:
                return match.group(1)
    return None


def _describe(rootfs: Path, recipe: StackRecipe, suite: str) -> str:
    version = None
    try:
        with _proc_mounted(rootfs):  # the JDK finds its libraries through /proc/self/exe
            result = subprocess.run(
                ["chroot", str(rootfs), *recipe.version_probe],
                capture_output=True,
                text=True,
                timeout=60,
                env={"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"},
            )
        if result.returncode == 0 and result.stdout.strip():
            version = result.stdout.strip().splitlines()[-1]
    except (OSError, subprocess.SubprocessError):
        pass
    if not version:
        version = _package_version(rootfs, recipe.version_package) or "unknown version"
    debian = ""
    with contextlib.suppress(OSError):
        debian = (rootfs / "etc/debian_version").read_text().strip()
    debian_part = f"Debian {suite} ({debian})" if debian else f"Debian {suite}"
    named = f"{recipe.display_name} {version}" if recipe.display_name else version
    return f"{debian_part}, {named}"


def _changes(recipe: StackRecipe, suite: str, version: str, with_ca: bool) -> list[str]:
    path = f"{recipe.path_prefix}:{DEFAULT_PATH}" if recipe.path_prefix else DEFAULT_PATH
    changes = [f"ENV PATH={path}", "ENV LANG=C.UTF-8"]
    if with_ca:
        for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
            changes.append(f"ENV {name}={CA_BUNDLE_PATH}")
    changes += [
        f"LABEL {VERSION_LABEL}={json.dumps(version)}",
        f"LABEL {LABEL_PREFIX}.language={json.dumps(recipe.language)}",
        f"LABEL {LABEL_PREFIX}.suite={json.dumps(suite)}",
        f"LABEL {LABEL_PREFIX}.ca-bundle={json.dumps('yes' if with_ca else 'no')}",
        f"CMD {json.dumps(list(recipe.cmd))}",
    ]
    return changes


def _import(client, tar_path: Path, ref: str, changes: list[str], log) -> None:
    if not tar_path.is_file():
        # docker-py treats a string that is not a file as a URL for the daemon to fetch.
        raise StackError(f"The stack tarball {tar_path} is missing.")
    repository, tag = parse_repository_tag(ref)
    old_id = None
    with contextlib.suppress(docker.errors.ImageNotFound):
        old_id = client.images.get(ref).id
    log(f"Importing {tar_path.name} as {ref}")
    try:
        output = client.api.import_image(src=str(tar_path), repository=repository, tag=tag, changes=changes)
    except docker.errors.APIError as exc:
        status = getattr(exc, "status_code", None)
        raise StackError(f"Docker could not import the stack image {ref}: {_docker_reason(exc)}",
                         transient=status is None or status >= 500) from exc
    for line in str(output).splitlines():
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if isinstance(message, dict) and message.get("error"):
                raise StackError(f"Docker could not import the stack image {ref}: {message['error']}")
    try:
        new_id = client.images.get(ref).id
    except docker.errors.ImageNotFound:
        raise StackError(f"Docker imported the stack but {ref} is not there: {output}") from None
    if old_id and old_id != new_id:
        # The previous import, now untagged; still used by app images built on it,
        # in which case Docker refuses and it stays.
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(old_id, noprune=False)


def build_local_stack(
    client: docker.DockerClient,
    language: str,
    *,
    suite: str = "bookworm",
    mirror: str = "http://deb.debian.org/debian",
    ca_bundle: str | None = None,
    cache_dir: Path,
    use_cache: bool = True,
    force: bool = True,
    log=_print,
) -> StackImage:
    """Build ``hakobune/stack-<language>:<suite>`` from Debian packages and import it.

    With ``use_cache`` a root filesystem tarball from an earlier build (same packages,
    same CA bundle) is re-imported instead of running debootstrap again. Without
    ``force``, an image already present (built by a concurrent caller while this one
    waited for the lock) is used as it is. Needs root (debootstrap and chroot)."""
    recipe = RECIPES.get(language)
    if recipe is None:
        known = ", ".join(sorted(RECIPES)) or "none"
        raise StackError(f"Hakobune cannot build a {language!r} stack locally; it knows: {known}.")
    ref = local_stack_ref(language, suite)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    ca_path = Path(ca_bundle) if ca_bundle else None
    if ca_path is not None and not ca_path.is_file():
        raise StackError(f"The CA bundle {ca_path} does not exist; fix BUILD_CA_BUNDLE or set it to empty.")
    ca_digest = _sha256(ca_path) if ca_path else ""
    base = f"stack-{language}-{suite}"
    tar_path = cache_dir / f"{base}.tar"
    meta_path = cache_dir / f"{base}.json"
    wanted = {"language": language, "suite": suite, "packages": list(recipe.packages), "ca_sha256": ca_digest}
    if recipe.backports_packages or recipe.files or recipe.apt_packages:
        wanted["backports_packages"] = list(recipe.backports_packages)
        if recipe.apt_packages_for(suite):
            wanted["apt_packages"] = list(recipe.apt_packages_for(suite))
        wanted["files_sha256"] = hashlib.sha256(repr(recipe.files).encode()).hexdigest()
    if recipe.post_install:
        wanted["post_install"] = list(recipe.post_install)

    with _locked(cache_dir / f".{base}.lock", log):
        if not force and image_present(client, ref):
            log(f"{ref} is already on this host")
            return StackImage(language, ref, "local", stack_version(client, ref))

        # Left by a build that was killed; ours to clean since we hold the lock.
        for stale in cache_dir.glob(f".build-{base}-*"):
            _remove_tree(stale, log)

        meta = None
        if use_cache and tar_path.is_file() and meta_path.is_file():
            with contextlib.suppress(ValueError, OSError):
                meta = json.loads(meta_path.read_text())
            if meta and any(meta.get(key) != value for key, value in wanted.items()):
                log(f"The cached {tar_path.name} was built with other packages or another CA bundle; rebuilding")
                meta = None
        elif not use_cache:
            for path in (tar_path, meta_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

        if meta is None:
            meta = _debootstrap(recipe, suite=suite, mirror=mirror, ca_path=ca_path, cache_dir=cache_dir,
                                base=base, tar_path=tar_path, log=log)
            meta.update(wanted)
            tmp_meta = meta_path.with_suffix(".json.tmp")
            tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
            os.replace(tmp_meta, meta_path)
        else:
            log(f"Using the cached root filesystem {tar_path}")

        version = meta["version"]
        _import(client, tar_path, ref, _changes(recipe, suite, version, bool(ca_digest)), log)
        log(f"Stack ready: {ref} ({version})")
        return StackImage(language, ref, "local", version)


def _debootstrap(recipe, *, suite, mirror, ca_path, cache_dir, base, tar_path, log) -> dict:
    debootstrap = _find_debootstrap()
    if debootstrap is None:
        raise StackError("debootstrap is not installed; run `apt-get install debootstrap` (or scripts/install-deps.sh).")
    if os.geteuid() != 0:
        raise StackError(
            "Building a stack with debootstrap needs root; run the stack build as root "
            f"(sudo python manage.py stack build {recipe.language})."
        )
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f".build-{base}-", dir=cache_dir))
    try:
        rootfs = workdir / "rootfs"
        args = [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(recipe.packages)}",
            suite,
            str(rootfs),
            mirror,
        ]
        log(f"Building {local_stack_ref(recipe.language, suite)} from Debian {suite} packages ({mirror}); "
            "this takes a minute or two")
        log("$ " + " ".join(args))
        env = dict(os.environ)
        env["PATH"] = DEFAULT_PATH + ":" + env.get("PATH", "")
        env.setdefault("LANG", "C.UTF-8")
        env["DEBIAN_FRONTEND"] = "noninteractive"
        returncode, tail = _run_streaming(args, log=log, timeout=DEBOOTSTRAP_TIMEOUT, env=env)
        if returncode != 0:
            detail = "\n".join(tail[-8:])
            debootstrap_log = rootfs / "debootstrap" / "debootstrap.log"
            if debootstrap_log.is_file():
                lines = debootstrap_log.read_text(errors="replace").splitlines()[-12:]
                detail += "\n--- debootstrap.log ---\n" + "\n".join(lines)
            raise StackError(
                f"debootstrap failed (exit status {returncode}) building the {recipe.language} stack "
                f"from {mirror}. Check that this host can reach the mirror (STACK_DEBIAN_MIRROR) and that "
                f"the suite {suite!r} exists (STACK_DEBIAN_SUITE).\n{detail}"
            )
        log(f"debootstrap finished in {time.monotonic() - started:.0f}s; finishing the root filesystem")

        if recipe.apt_packages_for(suite):
            _apt_install(rootfs, recipe.apt_packages_for(suite), suite=suite, mirror=mirror, env=env, log=log)
        if recipe.backports_packages:
            _apt_install(rootfs, recipe.backports_packages, suite=suite, mirror=mirror, env=env, log=log,
                         backports=True)
        for path, content in recipe.files:
            target = rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o755 if path.startswith("/usr/local/bin/") else 0o644)
        for command in recipe.post_install:
            log(f"$ {command}")
            returncode, tail = _run_streaming(["chroot", str(rootfs), "/bin/sh", "-euc", command], log=log,
                                              timeout=DEBOOTSTRAP_TIMEOUT, env=env)
            if returncode != 0:
                raise StackError(f"Finishing the {recipe.language} stack failed (exit status {returncode}):\n"
                                 + "\n".join(tail[-8:]))
        if ca_path is not None:
            target = rootfs / CA_BUNDLE_PATH.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            shutil.copyfile(ca_path, target)
            target.chmod(0o644)
            log(f"Copied the CA bundle {ca_path} to {CA_BUNDLE_PATH}")
        _add_app_user(rootfs)
        version = _describe(rootfs, recipe, suite)
        _slim_rootfs(rootfs)
        log(f"Root filesystem: {version}")

        tmp_tar = workdir / "rootfs.tar"
        code = subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "--acls", "-C", str(rootfs), "-cf", str(tmp_tar), "."],
            capture_output=True,
            text=True,
        )
        if code.returncode != 0:
            raise StackError(f"Could not archive the stack root filesystem: {code.stderr.strip()}")
        os.replace(tmp_tar, tar_path)
        size_mb = tar_path.stat().st_size / 1e6
        log(f"Saved {tar_path} ({size_mb:.0f} MB) in {time.monotonic() - started:.0f}s")
        return {"version": version, "mirror": mirror, "built_at": int(time.time()),
                "seconds": round(time.monotonic() - started, 1)}
    finally:
        _remove_tree(workdir, log)


def _apt_install(rootfs: Path, packages, *, suite, mirror, env, log, backports: bool = False) -> None:
    """apt-get install packages inside the new root filesystem, from the suite or
    from <suite>-backports (the host's own apt sources are left alone)."""
    if backports:
        sources = rootfs / "etc/apt/sources.list.d/backports.list"
        sources.parent.mkdir(parents=True, exist_ok=True)
        sources.write_text(f"deb {mirror} {suite}-backports main\n")
    apt_env = {**env, "DEBIAN_FRONTEND": "noninteractive"}
    target = ["-t", f"{suite}-backports"] if backports else []
    # No service a package installs (php-fpm, lighttpd) is started in the root filesystem.
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        with _proc_mounted(rootfs):  # the JDK's post-installation script runs java, which needs /proc
            _apt_get(rootfs, packages, target, suite=suite, backports=backports, env=apt_env, log=log)
    finally:
        policy.unlink()


def _apt_get(rootfs: Path, packages, target: list[str], *, suite, backports: bool, env, log) -> None:
    for args in (
        ["chroot", str(rootfs), "apt-get", "update", "-q"],
        ["chroot", str(rootfs), "apt-get", "install", "-y", "-q", "--no-install-recommends", *target, *packages],
        ["chroot", str(rootfs), "apt-get", "clean"],
    ):
        log("$ " + " ".join(args[2:]))
        returncode, tail = _run_streaming(args, log=log, timeout=DEBOOTSTRAP_TIMEOUT, env=env)
        if returncode != 0:
            raise StackError(
                f"Installing {', '.join(packages)} from {suite}{'-backports' if backports else ''} failed "
                f"(exit status {returncode}):\n" + "\n".join(tail[-8:])
            )


@contextlib.contextmanager
def _proc_mounted(rootfs: Path):
    """/proc mounted in the root filesystem while packages install in it."""
    proc = rootfs / "proc"
    proc.mkdir(mode=0o755, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "proc", "proc", str(proc)], capture_output=True).returncode == 0
    try:
        yield
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(proc)], check=False, capture_output=True)


# --- resolving ------------------------------------------------------------------------


def resolve_stack(
    client: docker.DockerClient,
    language: str,
    configured_image: str,
    *,
    suite: str = "bookworm",
    mirror: str = "http://deb.debian.org/debian",
    ca_bundle: str | None = None,
    cache_dir: Path,
    allow_pull: bool = True,
    allow_build: bool = True,
    pull_timeout: float = PULL_TIMEOUT,
    log=_print,
) -> StackImage:
    """The base image to build ``language`` apps on, in this order: the configured
    image if this host has it; the locally built stack if this host has it; the
    configured image pulled (bounded in time); a stack built now from Debian."""
    configured_image = (configured_image or "").strip()
    local_ref = local_stack_ref(language, suite)

    if configured_image and image_present(client, configured_image):
        return StackImage(language, configured_image, "registry", stack_version(client, configured_image))
    if language in RECIPES and image_present(client, local_ref):
        return StackImage(language, local_ref, "local", stack_version(client, local_ref))

    pull_reason = ""
    if allow_pull and configured_image:
        ok, pull_reason = pull_image(client, configured_image, timeout=pull_timeout, log=log)
        if ok:
            log(f"Pulled {configured_image}")
            return StackImage(language, configured_image, "registry", stack_version(client, configured_image))
        log(f"Could not pull {configured_image}: {pull_reason}")

    if allow_build and language in RECIPES:
        return build_local_stack(
            client, language, suite=suite, mirror=mirror, ca_bundle=ca_bundle,
            cache_dir=cache_dir, use_cache=True, force=False, log=log,
        )

    tried = []
    if configured_image:
        tried.append(f"{configured_image} is not on this host"
                     + (f" and could not be pulled ({pull_reason})" if pull_reason else ""))
    if language in RECIPES:
        tried.append(f"{local_ref} has not been built")
    what = "; ".join(tried)
    if language in RECIPES:
        hint = (f"Build it from Debian packages with `python manage.py stack build {language}`"
                + (f", or `docker pull {configured_image}` on this host" if configured_image else "")
                + ".")
    else:
        known = ", ".join(sorted(RECIPES))
        hint = (f"Hakobune can build local stacks only for: {known}; make "
                + (f"{configured_image}" if configured_image else f"an image for {language}")
                + " available on this host (docker pull or docker load).")
    raise StackError(f"No base image for {language}: {what}. {hint}")
