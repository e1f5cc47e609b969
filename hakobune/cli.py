"""`hakobune`: deploy and run services on a Hakobune platform from a terminal
or a CI pipeline. It talks to the portal's REST API (/api/v1/) over HTTP only.

    hakobune login https://paas.example.org      # asks for username and password
    hakobune deploy                               # this folder → a running service
    hakobune services | logs -f | events | rollback | env set K=V | traffic v3=80 v4=20 | alerts | open

Credentials live in $XDG_CONFIG_HOME/hakobune/credentials.json (or
~/.config/hakobune/), readable by you only. In CI set HAKOBUNE_URL and
HAKOBUNE_TOKEN instead; nothing is asked then.
"""

from __future__ import annotations

import argparse
import getpass
import gettext
import json
import os
import re
import shlex
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import uuid
import webbrowser
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ARCHIVE_LIMIT_HINT = 200 * 1000 * 1000


# Messages in the language of $LANGUAGE, $LC_ALL, $LC_MESSAGES or $LANG (English,
# or Japanese from the catalogue beside the portal's, domain hakobune-cli).
LOCALE_DIR = Path(__file__).resolve().parent / "platform" / "locale"


def _(message: str) -> str:
    return gettext.translation("hakobune-cli", LOCALE_DIR, fallback=True).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    return gettext.translation("hakobune-cli", LOCALE_DIR, fallback=True).ngettext(singular, plural, count)


def language() -> str:
    """The reader's language as the portal names it, for Accept-Language."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "")
        if value:
            return "ja" if value.split(":")[0].lower().startswith("ja") else "en"
    return "en"


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.code = code


# -- credentials -----------------------------------------------------------------------------


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hakobune"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def save_credentials(url: str, token: str, username: str = "") -> Path:
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = credentials_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump({"url": url, "token": token, "username": username}, file)
    os.chmod(path, 0o600)
    return path


def load_credentials() -> tuple[str, str]:
    url, token = os.environ.get("HAKOBUNE_URL", ""), os.environ.get("HAKOBUNE_TOKEN", "")
    if not (url and token):
        try:
            stored = json.loads(credentials_path().read_text())
        except (OSError, ValueError):
            stored = {}
        url, token = url or stored.get("url", ""), token or stored.get("token", "")
    if not url or not token:
        raise CliError(
            _("Not logged in. Run `hakobune login https://your-hakobune`, or set HAKOBUNE_URL and HAKOBUNE_TOKEN."),
            EXIT_USAGE,
        )
    return normalize_url(url), token


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://", url):
        url = f"https://{url}"
    return url


# -- the API ---------------------------------------------------------------------------------


class Api:
    def __init__(self, url: str, token: str = ""):
        self.url = normalize_url(url)
        self.session = requests.Session()
        if urlsplit(self.url).hostname in ("localhost", "127.0.0.1", "::1"):
            # This host's own portal: never through a proxy.
            self.session.trust_env = False
        self.session.headers["User-Agent"] = "hakobune-cli"
        # The platform's own refusals come back in the same language.
        self.session.headers["Accept-Language"] = language()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, expect=(200, 201, 202, 204), **kwargs) -> requests.Response:
        address = f"{self.url}/api/v1/{path.lstrip('/')}"
        kwargs.setdefault("timeout", 60)
        try:
            response = self.session.request(method, address, **kwargs)
        except requests.ConnectionError:
            raise CliError(_("Cannot reach {url}. Check the address and that the platform is up.").format(url=self.url))
        except requests.Timeout:
            raise CliError(_("{url} did not answer in time. Try again in a moment.").format(url=self.url))
        if response.status_code not in expect:
            raise CliError(self._error_message(response))
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs).json()

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs).json()

    @staticmethod
    def _error_message(response) -> str:
        try:
            body = response.json()
            message = body.get("error") or body.get("detail") or json.dumps(body)
        except ValueError:
            message = _("the server answered {status} {reason}").format(status=response.status_code, reason=response.reason)
            if response.status_code == 404:
                message += _("; is this a Hakobune address?")
        return message


def api_from_config() -> Api:
    url, token = load_credentials()
    return Api(url, token)


def pick_team(api: Api, team: str | None) -> str:
    team = team or os.environ.get("HAKOBUNE_TEAM")
    if team:
        return team
    teams = api.get("teams/")
    if len(teams) == 1:
        return teams[0]["name"]
    if not teams:
        raise CliError(_("You are in no team yet. Create one in the portal, or ask an owner to add you."), EXIT_USAGE)
    names = ", ".join(t["name"] for t in teams)
    raise CliError(_("You are in several teams ({names}); choose one with --team NAME.").format(names=names), EXIT_USAGE)


def default_service_name(path: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", path.resolve().name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"app-{name}".strip("-")
    return name[:30].rstrip("-")


def service_path(team: str, service: str) -> str:
    return f"teams/{quote(team)}/services/{quote(service)}"


# -- packing a folder ------------------------------------------------------------------------


class IgnoreRules:
    """.gitignore semantics that matter for an app folder: comments, `!`
    negation, trailing `/` for folders, patterns with a `/` anchored at their
    file's folder, `*`, `?`, `[...]` and `**`. Nested .gitignore files apply
    below their folder. The last rule that matches wins."""

    def __init__(self):
        self.rules: list[tuple[str, re.Pattern, bool, bool, bool]] = []

    def add_file(self, path: Path, base: str) -> None:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return
        for raw in text.splitlines():
            self.add(raw, base)

    def add(self, raw: str, base: str = "") -> None:
        line = raw.rstrip()
        if line.endswith("\\"):
            line += " "
        if not line or line.startswith("#"):
            return
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        elif line.startswith("\\"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            return
        anchored = "/" in line
        line = line.lstrip("/")
        self.rules.append((base, re.compile(_glob_to_regex(line)), negate, dir_only, anchored))

    def ignored(self, rel: str, is_dir: bool) -> bool:
        result = False
        name = rel.rsplit("/", 1)[-1]
        for base, pattern, negate, dir_only, anchored in self.rules:
            if base:
                if not rel.startswith(base + "/"):
                    continue
                sub = rel[len(base) + 1:]
            else:
                sub = rel
            if dir_only and not is_dir:
                continue
            if pattern.fullmatch(sub if anchored else name):
                result = not negate
        return result


def _glob_to_regex(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("/.*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape(glob[i]))
                i += 1
            else:
                body = glob[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def files_to_pack(root: Path) -> list[str]:
    """The folder's files, relative and in order, less what .gitignore files
    and .hakobuneignore leave out (and .git itself)."""
    rules = IgnoreRules()
    rules.add(".git/")
    chosen = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        rel_dir = "" if here == root else here.relative_to(root).as_posix()
        if (here / ".gitignore").is_file():
            rules.add_file(here / ".gitignore", rel_dir)
        # .hakobuneignore has the last word over .gitignore files.
        if rel_dir == "" and (root / ".hakobuneignore").is_file():
            rules.add_file(root / ".hakobuneignore", "")
        kept = []
        for name in sorted(dirs):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if (here / name).is_symlink():
                if not rules.ignored(rel, False):
                    chosen.append(rel)
            elif not rules.ignored(rel, True):
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not rules.ignored(rel, False):
                chosen.append(rel)
    return sorted(chosen)


def pack(root: Path, top: str) -> tuple[Path, int]:
    """A .tar.gz of the folder inside one top folder; returns (path, file count)."""
    names = files_to_pack(root)
    if not names:
        raise CliError(_("{root} has nothing to deploy (every file is ignored, or it is empty).").format(root=root), EXIT_USAGE)
    handle, archive = tempfile.mkstemp(prefix="hakobune-", suffix=".tar.gz")
    os.close(handle)
    with tarfile.open(archive, "w:gz") as tar:
        for name in names:
            tar.add(root / name, arcname=f"{top}/{name}", recursive=False)
    return Path(archive), len(names)


# -- uploading with a progress bar ------------------------------------------------------------


class ProgressBar:
    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label, self.done = max(total, 1), label, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_draw = 0.0
        self.started = time.monotonic()

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.tty and (now - self.last_draw > 0.1 or self.done >= self.total):
            self.last_draw = now
            self._draw("\r")

    def _draw(self, start: str, end: str = "") -> None:
        fraction = min(self.done / self.total, 1.0)
        filled = int(fraction * 30)
        bar = "█" * filled + "·" * (30 - filled)
        speed = self.done / max(time.monotonic() - self.started, 1e-6)
        self.stream.write(
            f"{start}{self.label} [{bar}] {fraction * 100:5.1f}%  {_size(self.done)}/{_size(self.total)}  {_size(speed)}/s{end}"
        )
        self.stream.flush()

    def finish(self) -> None:
        self._draw("\r" if self.tty else "", "\n")


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000


class MultipartUpload:
    """A multipart/form-data body read in chunks from disk, so that a large
    archive is never held in memory and the progress bar moves as it goes."""

    def __init__(self, fields: dict[str, str], file_field: str, path: Path, filename: str, progress: ProgressBar | None):
        self.boundary = f"hakobune-{uuid.uuid4().hex}"
        head = b""
        for name, value in fields.items():
            head += (
                f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ).encode()
        head += (
            f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/gzip\r\n\r\n"
        ).encode()
        self.parts = [head, path, f"\r\n--{self.boundary}--\r\n".encode()]
        self.length = len(head) + path.stat().st_size + len(self.parts[2])
        self.progress = progress
        self._file = None
        self._index = 0
        self._offset = 0

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        size = 64 * 1024 if size is None or size < 0 else size
        while self._index < len(self.parts):
            part = self.parts[self._index]
            if isinstance(part, Path):
                if self._file is None:
                    self._file = open(part, "rb")
                chunk = self._file.read(size)
                if not chunk:
                    self._file.close()
                    self._index += 1
                    continue
            else:
                chunk = part[self._offset:self._offset + size]
                self._offset += len(chunk)
                if not chunk:
                    self._index, self._offset = self._index + 1, 0
                    continue
            if self.progress:
                self.progress.update(len(chunk))
            return chunk
        return b""


# -- following streams ------------------------------------------------------------------------


def sse_events(response):
    """(event, id, data) of each server-sent event of a streamed response."""
    event, event_id, data = "message", None, []
    for raw in response.iter_lines(chunk_size=None, decode_unicode=True):
        if raw is None:
            continue
        line = raw.rstrip("\r")
        if line == "":
            if data:
                yield event, event_id, "\n".join(data)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "id":
            event_id = value
        elif field == "data":
            data.append(value)
    if data:
        yield event, event_id, "\n".join(data)


def open_stream(api: Api, path: str, params: dict):
    """A followed stream; None after waiting, when the portal serves as many
    streams as it may right now (503 with Retry-After): the caller asks again."""
    response = api.request("GET", path, params=params, stream=True, timeout=(10, 120),
                           headers={"Accept": "text/event-stream"}, expect=(200, 503))
    if response.status_code == 503:
        try:
            busy = response.json().get("code") == "too_many_streams"
        except ValueError:
            busy = False
        if not busy:
            raise CliError(Api._error_message(response))
        wait = response.headers.get("Retry-After", "")
        response.close()
        time.sleep(min(int(wait), 60) if wait.isdigit() else 10)
        return None
    return response


def follow_build(api: Api, build_id: int, out=None) -> dict:
    """Prints the build's log as it comes; returns the build once it ended."""
    out = out or sys.stdout
    after = "0"
    while True:
        response = open_stream(api, f"builds/{build_id}/log", {"follow": "1", "after": after})
        if response is None:
            continue
        ended = False
        try:
            for event, event_id, data in sse_events(response):
                if event == "message":
                    out.write(f"  {data}\n")
                    out.flush()
                    after = event_id or after
                elif event == "end":
                    ended = True
                    break
                # "timeout": the server closes long streams; follow again.
        except requests.RequestException:
            time.sleep(1)
        finally:
            response.close()
        if ended:
            return api.get(f"builds/{build_id}/")


# -- commands ---------------------------------------------------------------------------------


def cmd_login(args) -> int:
    url = normalize_url(args.url or os.environ.get("HAKOBUNE_URL", ""))
    if not args.url and not os.environ.get("HAKOBUNE_URL"):
        raise CliError(_("Give the platform's address: hakobune login https://your-hakobune"), EXIT_USAGE)
    token = args.token or os.environ.get("HAKOBUNE_TOKEN", "")
    if not token:
        if not sys.stdin.isatty() and not args.username:
            raise CliError(_("No terminal to ask for a password: use --token T or set HAKOBUNE_TOKEN."), EXIT_USAGE)
        username = args.username or input(_("Username: ")).strip()
        password = getpass.getpass(_("Password: "))
        answer = Api(url).post(
            "auth/token",
            json={"username": username, "password": password, "name": f"hakobune CLI on {socket.gethostname()}"[:100]},
        )
        token = answer["token"]
    me = Api(url, token).get("me/")
    path = save_credentials(url, token, me["username"])
    teams = ", ".join(f"{t['team']} ({t['role']})" for t in me["teams"]) or _("none yet")
    print(_("Logged in to {url} as {user}. Teams: {teams}.").format(url=url, user=me["username"], teams=teams))
    print(_("Credentials saved in {path} (readable by you only).").format(path=path))
    return EXIT_OK


def cmd_logout(args) -> int:
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        pass
    print(_("Logged out here. The token still works until you revoke it in the portal (API tokens)."))
    return EXIT_OK


def cmd_whoami(args) -> int:
    api = api_from_config()
    me = api.get("me/")
    print(_("{user} on {url}").format(user=me["username"], url=api.url))
    for team in me["teams"]:
        print(f"  {team['team']}: {team['role']}")
    return EXIT_OK


def cmd_services(args) -> int:
    api = api_from_config()
    teams = [args.team] if args.team else [t["name"] for t in api.get("teams/")]
    rows = []
    for team in teams:
        for service in api.get(f"teams/{quote(team)}/services/"):
            live = service["live_release"]
            rows.append((team, service["name"], service["status"], f"v{live['number']}" if live else "—", service["url"]))
    if not rows:
        print(_("No services yet. Run `hakobune deploy` in your app's folder."))
        return EXIT_OK
    widths = [max(len(str(row[i])) for row in rows + [("TEAM", "SERVICE", "STATUS", "RELEASE", "URL")]) for i in range(5)]
    for row in [("TEAM", "SERVICE", "STATUS", "RELEASE", "URL"), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return EXIT_OK


def cmd_deploy(args) -> int:
    root = Path(args.path or ".").resolve()
    if not root.is_dir():
        raise CliError(_("{root} is not a folder.").format(root=root), EXIT_USAGE)
    api = api_from_config()
    team = pick_team(api, args.team)
    name = args.service or default_service_name(root)
    where = service_path(team, name)

    existing = api.request("GET", f"{where}/", expect=(200, 404))
    if existing.status_code == 404:
        body = {"name": name}
        if args.target:
            body["target"] = args.target
        api.post(f"teams/{quote(team)}/services/", json=body)
        print(_("Created the service {name} in {team}.").format(name=name, team=team))
    if args.addon:
        _attach_before_deploy(api, team, name, args.addon)

    if args.git:
        build = api.post(f"{where}/deploys/", json={"git_url": args.git, "ref": args.ref or "", "subdir": args.subdir or ""})
        print((_("Deploying {git} at {ref} as deploy #{number}.") if args.ref else _("Deploying {git} as deploy #{number}."))
              .format(git=args.git, ref=args.ref, number=build["number"]))
    else:
        archive, count = pack(root, name)
        try:
            size = archive.stat().st_size
            print(ngettext("Packed {count} file of {root} ({size}).", "Packed {count} files of {root} ({size}).", count)
                  .format(count=count, root=root, size=_size(size)))
            if size > ARCHIVE_LIMIT_HINT:
                print(_("That is large: leave out dependencies and build output with a .hakobuneignore."), file=sys.stderr)
            progress = ProgressBar(0, _("Uploading"))
            fields = {"subdir": args.subdir} if args.subdir else {}
            body = MultipartUpload(fields, "source", archive, f"{name}.tar.gz", progress)
            progress.total = len(body)
            build = api.post(f"{where}/deploys/", data=body, headers={"Content-Type": body.content_type},
                             timeout=(10, 600))
            progress.finish()
        finally:
            archive.unlink(missing_ok=True)
        print(_("Uploaded; deploy #{number} started. Its build log:").format(number=build["number"]))
    build = follow_build(api, build["id"])
    if build["status"] == "live":
        print("\n" + _("{name} is live (deploy #{number}): {url}").format(name=name, number=build["number"], url=build["url"]))
        return EXIT_OK
    if build["status"] == "reviewing":
        print("\n" + _("Deploy #{number} is built and waits for an administrator's review; "
                       "it goes live by itself once they approve ({url}).").format(number=build["number"], url=build["url"]))
        return EXIT_OK
    if build["status"] == "superseded":
        print("\n" + _("Deploy #{number} was superseded: a newer deploy of {name} was accepted, and the newest "
                       "one is the one that goes live.").format(number=build["number"], name=name), file=sys.stderr)
        return EXIT_FAILED
    if build["status"] == "cancelled":
        print("\n" + _("Deploy #{number} was cancelled; the live release keeps serving.").format(number=build["number"]),
              file=sys.stderr)
        return EXIT_FAILED
    reason = build["reason"] or _("the build ended as {status}").format(status=build["status"])
    print("\n" + _("Deploy #{number} failed: {reason}").format(number=build["number"], reason=reason), file=sys.stderr)
    return EXIT_FAILED


def _service_args(args) -> tuple[Api, str, str]:
    api = api_from_config()
    team = pick_team(api, args.team)
    return api, team, args.service or default_service_name(Path.cwd())


def cmd_logs(args) -> int:
    api, team, name = _service_args(args)
    params = {"tail": str(args.tail)}
    for key, value in (("since", args.since), ("q", args.grep), ("stream", args.stream), ("release", args.release),
                       ("process", args.process)):
        if value:
            params[key] = value
    where = f"{service_path(team, name)}/logs"
    if not args.follow:
        body = api.get(where, params=params)
        if body.get("searched_back_to"):
            print(_("(searched back to {time} only; older lines were not read)").format(
                time=body["searched_back_to"][:19].replace("T", " ")), file=sys.stderr)
        for line in body["lines"]:
            print(_log_line(line))
        return EXIT_OK
    params["follow"] = "1"
    while True:
        response = open_stream(api, where, params)
        if response is None:
            continue
        try:
            for event, _event_id, data in sse_events(response):
                if event == "message":
                    line = json.loads(data)
                    print(_log_line(line), flush=True)
                    if line.get("id"):
                        # Stored lines: go on after the last one printed.
                        params["after"] = str(line["id"])
                    elif line.get("timestamp"):
                        params["since"] = line["timestamp"]
                elif event == "error":
                    raise CliError(json.loads(data).get("reason", _("the runtime stopped answering")))
        except requests.RequestException:
            time.sleep(1)
        finally:
            response.close()
        params["tail"] = "500"


def _log_line(line: dict) -> str:
    stamp = (line.get("timestamp") or "")[:19].replace("T", " ")
    who = line.get("instance") or "hakobune"
    return f"{stamp} {who}: {line['text']}" if stamp else f"{who}: {line['text']}"


def cmd_rollback(args) -> int:
    api, team, name = _service_args(args)
    where = service_path(team, name)
    target = args.release
    if target is None:
        service = api.get(f"{where}/")
        live = service["live_release"]
        releases = api.get(f"{where}/releases/")
        earlier = [r for r in releases if r["status"] == "superseded" and (not live or r["number"] < live["number"])]
        if not earlier:
            raise CliError(_("{name} has no earlier release that ran; nothing to roll back to.").format(name=name))
        target = earlier[0]["number"]
    else:
        target = int(str(target).lstrip("vV"))
    release = api.post(f"{where}/rollback/", json={"release": target})
    print(_("Rolling back {name} to v{target} as v{number}; nothing is rebuilt.").format(
        name=name, target=target, number=release["number"]))
    return EXIT_OK


def cmd_cancel(args) -> int:
    api, team, name = _service_args(args)
    where = service_path(team, name)
    number = args.build
    if number is None:
        latest = api.get(f"{where}/")["latest_build"]
        if not latest or latest["status"] not in ("queued", "fetching", "detecting", "building", "reviewing"):
            raise CliError(_("{name} has no deploy in progress to cancel.").format(name=name))
        number = latest["number"]
    else:
        number = int(str(number).lstrip("#"))
    build = api.post(f"{where}/builds/{number}/cancel/")
    print(_("Cancelled deploy #{number} of {name}; the live release keeps serving.").format(number=build["number"], name=name))
    return EXIT_OK


def cmd_env(args) -> int:
    api, team, name = _service_args(args)
    where = f"{service_path(team, name)}/env/"
    if args.env_command == "set":
        values, secrets = _pairs(args.pairs, "KEY=VALUE"), _pairs(args.secrets, "KEY=SECRET[:VERSION]")
        if not values and not secrets:
            raise CliError(_("Give KEY=VALUE, or --secret KEY=SECRET for a variable from Secret Manager."), EXIT_USAGE)
        answer = api.request("PUT", where, json={"set": values, "unset": [], "secrets": secrets}).json()
        print(_env_said(_("Set {keys}"), [*values, *secrets], answer))
    elif args.env_command == "unset":
        answer = api.request("PUT", where, json={"set": {}, "unset": args.keys}).json()
        print(_env_said(_("Unset {keys}"), args.keys, answer))
    else:
        answer = api.get(where)
        if not answer["env"]:
            print(_("{name} has no environment variables.").format(name=name))
        for var in answer["env"]:
            print(_("{key} from Secret Manager: {secret}").format(key=var["key"], secret=var["secret"])
                  if var.get("secret") else f"{var['key']}={var['value']}")
    return EXIT_OK


def _env_said(done: str, keys: list[str], answer: dict) -> str:
    return _release_said(done.format(keys=", ".join(keys)), answer)


def _release_said(done: str, answer: dict) -> str:
    """What was done, and which new release applies it (if the service is live)."""
    if answer.get("release"):
        return _("{done}; v{number} applies it.").format(done=done, number=answer["release"])
    return _("{done}.").format(done=done)


def _pairs(pairs: list[str] | None, shape: str) -> dict[str, str]:
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(_("{pair}: write {shape}.").format(pair=repr(pair), shape=shape), EXIT_USAGE)
        found[key] = value
    return found


def cmd_addons(args) -> int:
    api = api_from_config()
    team = pick_team(api, args.team)
    where = f"teams/{quote(team)}/addons/"
    if args.addons_command == "create":
        addon = api.post(where, json={"kind": args.kind, "name": args.name or ""})
        print(_("Created {name} ({kind}); it is starting. Its URL: {url}").format(
            name=addon["name"], kind=addon["kind"], url=addon["url"]))
        if args.service:
            _attach(api, team, addon["name"], args.service)
    elif args.addons_command == "attach":
        _attach(api, team, args.addon, args.service or default_service_name(Path.cwd()))
    elif args.addons_command == "detach":
        service = args.service or default_service_name(Path.cwd())
        answer = api.request("DELETE", f"{service_path(team, service)}/addons/{quote(args.addon)}/").json()
        print(_release_said(_("Detached {addon} from {service}").format(addon=args.addon, service=service), answer))
    elif args.addons_command == "delete":
        typed = confirm_name(args.addon, args.confirm, _("the add-on {name} and its data").format(name=args.addon))
        answer = api.request("DELETE", f"{where}{quote(args.addon)}/", json={"confirm": typed}).json()
        if answer.get("external"):
            print(_("{name} is removed: its URL is forgotten, the database itself is untouched.").format(
                name=answer["name"]))
        else:
            print(_("{name} is being deleted, with its data.").format(name=answer["name"]))
    else:
        addons = api.get(where)
        if not addons:
            print(_("Team {team} has no add-ons. Create one: hakobune addons create postgres").format(team=team))
        for addon in addons:
            services = ", ".join(addon["services"]) or "—"
            version = _("external") if addon.get("external") else addon["version"] or "—"
            print(f"{addon['name']}  {addon['kind']}  {addon['status']}  {version}  "
                  f"{addon['env_key']} → {services}")
    return EXIT_OK


def _size(size) -> str:
    if size is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(size)


def _backup_line(backup: dict) -> str:
    said = (backup.get("check") or {}).get("summary") or backup.get("detail") or ""
    return (f"{backup['id']}  {backup['status']}  {backup['created_at'][:19].replace('T', ' ')}  "
            f"{_size(backup['size_bytes'])}  {backup['trigger']}  {said}").rstrip()


def _wait_for(api: Api, path: str, done, every: float = 2.0, limit: float = 3600.0) -> dict:
    deadline = time.monotonic() + limit
    while True:
        found = api.get(path)
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(every)


def cmd_backups(args) -> int:
    api = api_from_config()
    team = pick_team(api, args.team)
    where = f"teams/{quote(team)}/addons/{quote(args.addon)}/backups/"
    if args.backups_command == "create":
        backup = api.post(where)
        print(_("Backup {id} of {addon} is being made; it counts once a restore of it is verified.").format(
            id=backup["id"], addon=args.addon))
        if not args.wait:
            return EXIT_OK
        backup = _wait_for(api, f"{where}{backup['id']}/", lambda found: found["status"] != "running")
        print(_backup_line(backup))
        return EXIT_OK if backup["status"] == "verified" else EXIT_FAILED
    if args.backups_command == "restore":
        if bool(args.confirm) == bool(args.new_addon):
            raise CliError(_("Give --confirm {addon} to replace what {addon} holds, or --new-addon NAME to restore "
                             "into a new add-on.").format(addon=args.addon), EXIT_USAGE)
        body = {"confirm": args.confirm} if args.confirm else {"new_addon": args.new_addon}
        made = api.post(f"{where}{args.backup}/restore/", json=body)
        print(_("Restoring backup {id} into {target}.").format(id=args.backup, target=made["addon"]))
        if not args.wait:
            return EXIT_OK

        def ended(backup):
            mine = next((r for r in backup["restores"] if r["id"] == made["id"]), None)
            return mine is None or mine["status"] in ("succeeded", "failed")

        backup = _wait_for(api, f"{where}{args.backup}/", ended)
        mine = next((r for r in backup["restores"] if r["id"] == made["id"]), {"status": "?", "detail": ""})
        print(f"{mine['status']}: {mine['detail']}")
        return EXIT_OK if mine["status"] == "succeeded" else EXIT_FAILED
    if args.backups_command == "schedule":
        change = {}
        if args.cron is not None:
            change["schedule"] = args.cron
        if args.keep is not None:
            change["retention"] = args.keep
        found = (api.request("PATCH", f"{where}schedule/", json=change).json() if change
                 else api.get(f"{where}schedule/"))
        print(_("Schedule: {schedule} (UTC), keeping {retention} verified backups; next: {next}; last: {last}").format(
            schedule=found["schedule"] or _("none"), retention=found["retention"], next=found["next_run"] or "—",
            last=found["last_run"] or "—"))
        if found["missed"]:
            print(_("The last scheduled backup was not made: the platform's scheduler is not running."))
        return EXIT_OK
    backups = api.get(where)
    if not backups:
        print(_("{addon} has no backups yet. Make one: hakobune backups create {addon}").format(addon=args.addon))
    for backup in backups:
        print(_backup_line(backup))
    return EXIT_OK


def _attach_before_deploy(api: Api, team: str, service: str, names: list[str]) -> None:
    """`deploy --addon db`: each add-on the service does not have yet is
    attached first, so that the deploy's release phase finds its URL."""
    addons = {addon["name"]: addon for addon in api.get(f"teams/{quote(team)}/addons/")}
    for name in names:
        addon = addons.get(name)
        if addon is None:
            raise CliError(_("Team {team} has no add-on called {addon}. Create it: hakobune addons create postgres "
                             "--name {addon}").format(team=team, addon=name), EXIT_USAGE)
        if service not in addon["services"]:
            _attach(api, team, name, service)


def confirm_name(name: str, given: str | None, what: str) -> str:
    """The name typed to confirm deleting `what`: --confirm, else asked at the
    terminal (without one, nothing: the portal refuses and says why)."""
    if given is not None:
        return given
    if not sys.stdin.isatty():
        return ""
    try:
        return input(_("Type {name} to delete {what}: ").format(name=name, what=what)).strip()
    except EOFError:
        return ""


def cmd_volumes(args) -> int:
    api = api_from_config()
    team = pick_team(api, args.team)
    where = f"teams/{quote(team)}/volumes/"
    command = args.volumes_command
    if command == "create":
        volume = api.post(where, json={"name": args.volume})
        print(_("Created the volume {name}; it is being made.").format(name=volume["name"]))
        if args.path:
            _mount(api, team, args.volume, args.service or default_service_name(Path.cwd()), args.path)
    elif command == "attach":
        _mount(api, team, args.volume, args.service or default_service_name(Path.cwd()), args.path)
    elif command == "detach":
        service = args.service or default_service_name(Path.cwd())
        answer = api.request("DELETE", f"{service_path(team, service)}/volumes/{quote(args.volume)}/").json()
        print(_release_said(_("Detached {volume} from {service}; its data stays").format(
            volume=args.volume, service=service), answer))
    elif command == "share":
        answer = api.request("PATCH", f"{where}{quote(args.volume)}/", json={"shared": not args.off}).json()
        done = (_("{volume} is used by one instance at a time (deploys stop, then start)") if args.off else
                _("{volume} is marked safe to share (several instances, rolling deploys)")).format(volume=args.volume)
        print(_release_said(done, answer))
    elif command == "delete":
        typed = confirm_name(args.volume, args.confirm, _("the volume {name} and its data").format(name=args.volume))
        answer = api.request("DELETE", f"{where}{quote(args.volume)}/", json={"confirm": typed}).json()
        print(_("{name} is being deleted, with its data.").format(name=answer["name"]))
    else:
        volumes = api.get(where)
        disk = api.get(f"teams/{quote(team)}/disk/")
        if not volumes:
            print(_("Team {team} has no volumes. Create one: hakobune volumes create data --path /data").format(team=team))
        for volume in volumes:
            mounted = f"{volume['service']}:{volume['mount_path']}" if volume["service"] else "—"
            sharing = _("shared") if volume["shared"] else _("one instance")
            print(f"{volume['name']}  {volume['status']}  {_mib(volume['size_bytes'])} MiB  {mounted}  {sharing}")
        print(_("Disk: {used} MiB of {limit} MiB (volumes and backups)").format(
            used=_mib(disk["used_bytes"]), limit=_mib(disk["limit_bytes"])))
    return EXIT_OK


def _mib(value: int) -> str:
    return f"{value / 1048576:.1f}"


def _mount(api: Api, team: str, volume: str, service: str, path: str) -> None:
    answer = api.post(f"{service_path(team, service)}/volumes/", json={"volume": volume, "path": path})
    print(_release_said(_("Mounted {volume} in {service} at {path}").format(
        volume=volume, service=service, path=answer["mount_path"]), answer))


def cmd_destroy(args) -> int:
    api = api_from_config()
    team = pick_team(api, args.team)
    service = args.service or default_service_name(Path.cwd())
    typed = confirm_name(service, args.confirm, _("the service {name}").format(name=service))
    answer = api.request("DELETE", f"{service_path(team, service)}/", json={"confirm": typed}).json()
    print(answer["message"])
    return EXIT_OK


def _attach(api: Api, team: str, addon: str, service: str) -> None:
    answer = api.post(f"{service_path(team, service)}/addons/", json={"addon": addon})
    done = _("Attached {addon} to {service} as {key}").format(addon=addon, service=service, key=answer["env_key"])
    print(_release_said(done, answer))


def cmd_traffic(args) -> int:
    api, team, name = _service_args(args)
    where = f"{service_path(team, name)}/traffic/"
    if args.shares:
        percents = {}
        for share in args.shares:
            release, sep, percent = share.partition("=")
            release = release.strip().lower().removeprefix("v")
            if not sep or not release.isdigit() or not percent.strip().isdigit():
                raise CliError(_("{share}: write RELEASE=PERCENT, like v3=80.").format(share=repr(share)), EXIT_USAGE)
            percents[release] = int(percent)
        answer = api.request("PUT", where, json={"percents": percents}).json()
    else:
        answer = api.get(where)
    for share in answer["split"]:
        print(f"v{share['release']:<4} {share['percent']:>3}%  {share['revision']}")
    return EXIT_OK


def cmd_scale(args) -> int:
    api, team, name = _service_args(args)
    where = f"{service_path(team, name)}/processes/"
    if args.counts:
        counts = {}
        for pair in args.counts:
            process, sep, count = pair.partition("=")
            if not sep or not process.strip() or not count.strip().isdigit():
                raise CliError(_("{pair}: write PROCESS=COUNT, like worker=2.").format(pair=repr(pair)), EXIT_USAGE)
            counts[process.strip()] = int(count)
        answer = api.request("PATCH", where, json=counts).json()
        said = ", ".join(f"{process}={count}" for process, count in counts.items())
        if answer.get("release"):
            print(_("Scaled {name}: {said}; v{release} applies it.").format(name=name, said=said, release=answer["release"]))
        else:
            print(_("Scaled {name}: {said}.").format(name=name, said=said))
    else:
        answer = api.get(where)
    for process in answer["processes"]:
        routed = _("routed") if process["routed"] else _("not routed")
        print(f"{process['name']:<12} {process['instances']:>2} × ({process['cpu']:g} CPU, {process['memory_mb']} MiB)"
              f"  {routed}  {process['command']}")
    return EXIT_OK


def cmd_jobs(args) -> int:
    """The service's scheduled jobs (hakobune.toml's [[jobs]]), each with its
    next run and its latest runs; `--log` adds each run's last lines."""
    api, team, name = _service_args(args)
    answer = api.get(f"{service_path(team, name)}/jobs/")
    if not answer["jobs"]:
        print(_("{name} has no scheduled jobs. Add one to hakobune.toml:").format(name=name))
        print('  [[jobs]]\n  schedule = "*/10 * * * *"\n  command = "python manage.py clearsessions"')
        return EXIT_OK
    for job in answer["jobs"]:
        print(f"{job['name']}  {job['schedule']}  {job['command']}")
        print("  " + _("next run: {when}").format(when=_short_time(job["next_run"])))
        if not job["runs"]:
            print("  " + _("no run yet"))
        for run in job["runs"][: args.runs]:
            code = "" if run["exit_code"] is None else _("exit {code}").format(code=run["exit_code"])
            print(f"  {_short_time(run['scheduled_for'])}  {run['status']:<9} {code}  {run['detail']}".rstrip())
            if args.log and run["log"]:
                for line in run["log"].splitlines():
                    print(f"      {line}")
    return EXIT_OK


def _short_time(value: str | None) -> str:
    """An API time (ISO 8601, UTC) as `2026-11-30 07:40 UTC`."""
    if not value:
        return "—"
    return value.replace("T", " ")[:16] + " UTC"


def cmd_run(args) -> int:
    """`hakobune run -- CMD`: CMD in a one-off container of the live release,
    attached to this terminal through the portal's WebSocket
    (api/terminal.py); exits with CMD's exit code."""
    import websocket  # websocket-client

    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CliError(_("Give the command after --, like: hakobune run -- python manage.py shell"), EXIT_USAGE)
    api, team, name = _service_args(args)
    tty = sys.stdin.isatty() and sys.stdout.isatty() and not args.no_tty
    rows, cols = _terminal_size()
    address = re.sub(r"^http", "ws", api.url) + f"/api/v1/{service_path(team, name)}/run"
    headers = [f"{key}: {value}" for key, value in api.session.headers.items()
               if key in ("Authorization", "Accept-Language", "User-Agent")]
    try:
        connection = websocket.create_connection(
            address, header=headers, timeout=60, enable_multithread=True,
            **({} if api.session.trust_env else {"http_no_proxy": ["*"]}),
        )
    except (OSError, websocket.WebSocketException) as exc:
        raise CliError(_("Cannot reach {url}: {error}").format(url=api.url, error=exc))
    try:
        connection.send(json.dumps({"command": shlex.join(command), "tty": tty, "rows": rows, "cols": cols}))
        answer = json.loads(connection.recv())
        if answer.get("type") == "error":
            raise CliError(answer.get("message") or answer.get("code"))
        connection.settimeout(None)
        return _attached(connection, tty)
    finally:
        connection.close()


def _terminal_size() -> tuple[int, int]:
    size = shutil.get_terminal_size((80, 24))
    return size.lines, size.columns


def _attached(connection, tty: bool) -> int:
    """Relays this terminal to the one-off until it ends; its exit code."""
    import threading

    import websocket

    stdin = sys.stdin.fileno()
    saved = None
    if tty:
        import signal
        import termios
        import tty as tty_module

        saved = termios.tcgetattr(stdin)
        tty_module.setraw(stdin)

        def resized(*_):
            rows, cols = _terminal_size()
            try:
                connection.send(json.dumps({"type": "resize", "rows": rows, "cols": cols}))
            except websocket.WebSocketException:
                pass

        signal.signal(signal.SIGWINCH, resized)

    def forward_stdin():
        try:
            while data := os.read(stdin, 4096):
                connection.send_binary(data)
            connection.send(json.dumps({"type": "eof"}))
        except (OSError, websocket.WebSocketException):
            pass

    threading.Thread(target=forward_stdin, daemon=True).start()
    outputs = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    try:
        while True:
            try:
                opcode, data = connection.recv_data()
            except websocket.WebSocketConnectionClosedException:
                raise CliError(_("The connection to the platform closed before the command ended."))
            if opcode == websocket.ABNF.OPCODE_BINARY and data:
                out = outputs.get(data[0], sys.stdout.buffer)
                out.write(data[1:])
                out.flush()
            elif opcode == websocket.ABNF.OPCODE_TEXT:
                message = json.loads(data)
                if message.get("type") == "exit":
                    if message.get("timed_out"):
                        print("\r\n" + _("The command ran out of time and was stopped."), file=sys.stderr)
                    code = message.get("code")
                    return code if isinstance(code, int) else EXIT_FAILED
                if message.get("type") == "error":
                    raise CliError(message.get("message") or message.get("code"))
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                raise CliError(_("The connection to the platform closed before the command ended."))
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


EVENT_NAMES = ("deploy_failed", "crash_loop", "memory_high", "error_rate", "backup_failed")
TARGET_KINDS = ("email", "slack", "discord", "teams", "webhook")


def cmd_alerts(args) -> int:
    api = api_from_config()
    team = pick_team(api, args.team)
    where = f"teams/{quote(team)}/alerts/"
    if args.alerts_command == "create":
        body = {"service": args.service}
        if args.on is not None:
            wanted = {name.strip().replace("-", "_") for name in args.on.split(",") if name.strip()}
            unknown = sorted(wanted - set(EVENT_NAMES))
            if unknown:
                raise CliError(_("{names}: not an event. The events: {events}.").format(
                    names=", ".join(unknown), events=", ".join(EVENT_NAMES)), EXIT_USAGE)
            body.update({name: name in wanted for name in EVENT_NAMES})
        if args.memory is not None:
            body["memory_percent"] = args.memory
        if args.error_rate is not None:
            body["error_rate_percent"] = args.error_rate
        if args.targets:
            body["targets"] = args.targets
        new_targets = []
        for kind in TARGET_KINDS:
            for address in getattr(args, f"new_{kind}") or []:
                new_targets.append({"kind": kind, "address": address, "name": _target_name(kind, address),
                                    "language": language()})
        if new_targets:
            body["new_targets"] = new_targets
        rules = api.post(where, json=body)
        print(_("Alert rules {id} set for {whom}.").format(id=rules["id"], whom=_rules_whom(rules, team)))
        print(_rules_line(rules))
    elif args.alerts_command == "delete":
        rules_id = args.rules
        if not rules_id.isdigit():
            found = [rules for rules in api.get(where) if (rules["service"] or "") == rules_id]
            if not found:
                raise CliError(_("Team {team} has no alert rules for {name}; `hakobune alerts list` shows them.").format(
                    team=team, name=rules_id))
            rules_id = str(found[0]["id"])
        api.request("DELETE", f"{where}{rules_id}/")
        print(_("Removed alert rules {id}.").format(id=rules_id))
    else:
        rules = api.get(where)
        if not rules:
            print(_("Team {team} has no alert rules of its own: every event is sent to every target, memory at "
                    "90 %, errors at 5 %. Set some: hakobune alerts create --on deploy_failed,crash_loop").format(
                team=team))
        for one in rules:
            print(f"{one['id']:>4}  {_rules_whom(one, team)}")
            print(f"      {_rules_line(one)}")
    return EXIT_OK


def _target_name(kind: str, address: str) -> str:
    """A new target's name: an e-mail address itself, a URL by its kind and host."""
    if kind == "email":
        return address[:100]
    host = urlsplit(address).hostname or address
    return f"{kind} {host} {uuid.uuid5(uuid.NAMESPACE_URL, address).hex[:6]}"[:100]


def _rules_whom(rules: dict, team: str) -> str:
    return rules["service"] or _("the whole team {team}").format(team=team)


def _rules_line(rules: dict) -> str:
    events = [name for name in EVENT_NAMES if rules.get(name)]
    said = _("events: {events}; memory at {memory} %; errors at {errors} %; to {targets}").format(
        events=", ".join(events) or _("none"), memory=rules["memory_percent"], errors=rules["error_rate_percent"],
        targets=", ".join(rules["targets"]) or _("every target of the team"))
    return said


def cmd_events(args) -> int:
    api = api_from_config()
    team = pick_team(api, args.team)
    if args.all:
        where = f"teams/{quote(team)}/events/"
    else:
        where = f"{service_path(team, args.service or default_service_name(Path.cwd()))}/events/"
    params = {"limit": str(args.limit)}
    for key, value in (("kind", args.kind), ("since", args.since)):
        if value:
            params[key] = value
    page = api.get(where, params=params)["events"]
    for event in reversed(page):
        print(_event_line(event, args.all))
    if not args.follow:
        return EXIT_OK
    last = page[0]["id"] if page else 0
    params.pop("since", None)
    while True:
        time.sleep(args.interval)
        # Newest first: go back a page at a time until the last one printed.
        fresh, before = [], None
        while True:
            asked = {**params, "limit": "200", **({"before": str(before)} if before else {})}
            answer = api.get(where, params=asked)
            newer = [event for event in answer["events"] if event["id"] > last]
            fresh += newer
            if len(newer) < len(answer["events"]) or not answer["next_before"]:
                break
            before = answer["next_before"]
        for event in sorted(fresh, key=lambda event: event["id"]):
            print(_event_line(event, args.all), flush=True)
        if fresh:
            last = max(event["id"] for event in fresh)


def _event_line(event: dict, with_service: bool) -> str:
    stamp = (event.get("at") or "")[:19].replace("T", " ")
    who = event["actor"]["label"] or "hakobune"
    where = f"{event['service'] or '—'}  " if with_service else ""
    return f"{stamp}  {where}{event['kind']}  {who}: {event['message']}"


def cmd_open(args) -> int:
    api, team, name = _service_args(args)
    url = api.get(f"{service_path(team, name)}/")["url"]
    print(url)
    if not args.print_only:
        webbrowser.open(url)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hakobune", description=_("Deploy and run services on Hakobune."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_service(sub):
        sub.add_argument("--service", "-s", help=_("the service (default: this folder's name)"))
        sub.add_argument("--team", "-t", help=_("the team (default: your only team, or $HAKOBUNE_TEAM)"))
        return sub

    login = commands.add_parser("login", help=_("log in to a Hakobune platform"))
    login.add_argument("url", nargs="?", help=_("the platform's address, like https://paas.example.org"))
    login.add_argument("--token", help=_("an API token from the portal, instead of a password"))
    login.add_argument("--username", "-u")
    login.set_defaults(func=cmd_login)

    commands.add_parser("logout", help=_("forget the saved credentials")).set_defaults(func=cmd_logout)
    commands.add_parser("whoami", help=_("who you are logged in as")).set_defaults(func=cmd_whoami)

    services = commands.add_parser("services", help=_("list your services"))
    services.add_argument("--team", "-t")
    services.set_defaults(func=cmd_services)

    deploy = with_service(commands.add_parser("deploy", help=_("deploy this folder (or a git repository)")))
    deploy.add_argument("path", nargs="?", help=_("the app's folder (default: this one)"))
    deploy.add_argument("--target", help=_("where it runs when it is created: local, cloudrun, …"))
    deploy.add_argument("--git", metavar="URL", help=_("deploy this git repository instead of the folder"))
    deploy.add_argument("--ref", help=_("branch, tag or commit of --git"))
    deploy.add_argument("--subdir", help=_("the app's folder inside the source"))
    deploy.add_argument("--addon", action="append", metavar="NAME",
                        help=_("attach this add-on of the team before deploying (again for each add-on)"))
    deploy.set_defaults(func=cmd_deploy)

    logs = with_service(commands.add_parser("logs", help=_("what the service prints")))
    logs.add_argument("--follow", "-f", action="store_true", help=_("keep printing new lines"))
    logs.add_argument("--since", help=_("from this time or duration back: 10m, 2h, 2026-01-31T12:00:00Z"))
    logs.add_argument("--tail", "-n", type=int, default=200)
    logs.add_argument("--grep", "-g", help=_("only lines holding this text"))
    logs.add_argument("--stream", choices=["stdout", "stderr", "platform"], help=_("only this output"))
    logs.add_argument("--release", "-r", help=_("only lines of this release: 3 or v3"))
    logs.add_argument("--process", help=_("only lines of this process type: web, worker"))
    logs.set_defaults(func=cmd_logs)

    back = with_service(commands.add_parser("rollback", help=_("go back to an earlier release")))
    back.add_argument("release", nargs="?", help=_("the release, like v3 (default: the one before the live one)"))
    back.set_defaults(func=cmd_rollback)

    cancel = with_service(commands.add_parser("cancel", help=_("stop a deploy still queued or building")))
    cancel.add_argument("build", nargs="?", help=_("the deploy's number, like 7 (default: the newest one in progress)"))
    cancel.set_defaults(func=cmd_cancel)

    env = with_service(commands.add_parser("env", help=_("environment variables")))
    env_commands = env.add_subparsers(dest="env_command", metavar="ACTION")
    env_set = env_commands.add_parser("set", help=_("set KEY=VALUE … (--secret KEY=SECRET for Secret Manager)"))
    env_set.add_argument("pairs", nargs="*", metavar="KEY=VALUE")
    env_set.add_argument(
        "--secret", dest="secrets", action="append", metavar="KEY=SECRET[:VERSION]",
        help=_("a variable Cloud Run reads from Secret Manager, one of your team's secrets: "
               "db-password means hakobune_<team>_db-password (repeatable)"),
    )
    env_unset = env_commands.add_parser("unset", help=_("unset KEY …"))
    env_unset.add_argument("keys", nargs="+", metavar="KEY")
    env_commands.add_parser("list", help=_("list the keys (values are write-only)"))
    env.set_defaults(func=cmd_env)

    addons = commands.add_parser("addons", help=_("the team's PostgreSQL and Redis add-ons"))
    addons.add_argument("--team", "-t", help=_("the team (default: your only team, or $HAKOBUNE_TEAM)"))
    addon_commands = addons.add_subparsers(dest="addons_command", metavar="ACTION")
    create = addon_commands.add_parser("create", help=_("create one: postgres or redis"))
    create.add_argument("kind", choices=["postgres", "redis"])
    create.add_argument("--name", help=_("its name (default: the kind)"))
    create.add_argument("--service", "-s", help=_("attach it to this service too"))
    for action, words in (("attach", _("give a service its URL")), ("detach", _("take its URL from a service"))):
        sub = addon_commands.add_parser(action, help=words)
        sub.add_argument("addon")
        sub.add_argument("--service", "-s", help=_("the service (default: this folder's name)"))
    delete = addon_commands.add_parser("delete", help=_("delete one and its data"))
    delete.add_argument("addon")
    delete.add_argument("--confirm", help=_("the add-on's name again: its data is deleted for good"))
    addon_commands.add_parser("list", help=_("list them"))
    addons.set_defaults(func=cmd_addons)

    backups = commands.add_parser("backups", help=_("backups of an add-on, verified by a restore"))
    backups.add_argument("--team", "-t", help=_("the team (default: your only team, or $HAKOBUNE_TEAM)"))
    backup_commands = backups.add_subparsers(dest="backups_command", metavar="ACTION", required=True)
    backup_create = backup_commands.add_parser("create", help=_("back up an add-on now"))
    backup_create.add_argument("addon")
    backup_create.add_argument("--wait", action="store_true", help=_("wait until it is verified or failed"))
    backup_list = backup_commands.add_parser("list", help=_("list an add-on's backups"))
    backup_list.add_argument("addon")
    backup_restore = backup_commands.add_parser("restore", help=_("restore a backup into its add-on or a new one"))
    backup_restore.add_argument("addon")
    backup_restore.add_argument("backup", type=int, help=_("the backup's number (hakobune backups list)"))
    backup_restore.add_argument("--confirm", help=_("the add-on's name again: what it holds now is replaced"))
    backup_restore.add_argument("--new-addon", help=_("restore into a new add-on of this name instead"))
    backup_restore.add_argument("--wait", action="store_true", help=_("wait until it has ended"))
    backup_schedule = backup_commands.add_parser("schedule", help=_("show or set when backups are made"))
    backup_schedule.add_argument("addon")
    backup_schedule.add_argument("--cron", help=_('a cron line in UTC, like "0 3 * * *"; "" for none'))
    backup_schedule.add_argument("--keep", type=int, help=_("how many verified backups are kept"))
    backups.set_defaults(func=cmd_backups)


    volumes = commands.add_parser("volumes", help=_("the team's volumes: files kept across deploys"))
    volumes.add_argument("--team", "-t", help=_("the team (default: your only team, or $HAKOBUNE_TEAM)"))
    volume_commands = volumes.add_subparsers(dest="volumes_command", metavar="ACTION")
    create = volume_commands.add_parser("create", help=_("create one"))
    create.add_argument("volume")
    create.add_argument("--path", "-p", help=_("mount it in the service at this path too, like /data"))
    create.add_argument("--service", "-s", help=_("the service (default: this folder's name)"))
    attach = volume_commands.add_parser("attach", help=_("mount it in a service at a path"))
    attach.add_argument("volume")
    attach.add_argument("path", help=_("where the app sees it, like /data"))
    attach.add_argument("--service", "-s", help=_("the service (default: this folder's name)"))
    detach = volume_commands.add_parser("detach", help=_("unmount it from a service; its data stays"))
    detach.add_argument("volume")
    detach.add_argument("--service", "-s", help=_("the service (default: this folder's name)"))
    share = volume_commands.add_parser("share", help=_("mark it safe for several instances at once (owners)"))
    share.add_argument("volume")
    share.add_argument("--off", action="store_true", help=_("one instance at a time again"))
    delete = volume_commands.add_parser("delete", help=_("delete one and its data (asks for its name)"))
    delete.add_argument("volume")
    delete.add_argument("--confirm", help=_("the volume's name again, instead of being asked"))
    volume_commands.add_parser("list", help=_("list them, with the team's disk use"))
    volumes.set_defaults(func=cmd_volumes)

    destroy = with_service(commands.add_parser(
        "destroy", help=_("delete a service (asks for its name); its volumes and add-ons stay")))
    destroy.add_argument("--confirm", help=_("the service's name again, instead of being asked"))
    destroy.set_defaults(func=cmd_destroy)

    traffic = with_service(commands.add_parser("traffic", help=_("show or split the requests between releases")))
    traffic.add_argument("shares", nargs="*", metavar="vN=PERCENT", help=_("like v3=80 v4=20 (Cloud Run)"))
    traffic.set_defaults(func=cmd_traffic)

    scale = with_service(commands.add_parser("scale", help=_("show or set the instances of each process type")))
    scale.add_argument("counts", nargs="*", metavar="PROCESS=COUNT", help=_("like worker=2 or web=3"))
    scale.set_defaults(func=cmd_scale)

    jobs = with_service(commands.add_parser("jobs", help=_("the scheduled jobs and their latest runs")))
    jobs.add_argument("--runs", type=int, default=5, metavar="N", help=_("show the latest N runs of each (default 5)"))
    jobs.add_argument("--log", action="store_true", help=_("show each run's last lines of output"))
    jobs.set_defaults(func=cmd_jobs)

    run = with_service(commands.add_parser(
        "run", help=_("run a command in a one-off container of the live release: hakobune run -- CMD")))
    run.add_argument("--no-tty", action="store_true", help=_("no terminal, even when this one is a terminal"))
    run.add_argument("cmd", nargs=argparse.REMAINDER, help=_("the command, after --"))
    run.set_defaults(func=cmd_run)
    alerts = commands.add_parser("alerts", help=_("the team's alert rules: what is sent, and where (owners)"))
    alerts.add_argument("--team", "-t", help=_("the team (default: your only team, or $HAKOBUNE_TEAM)"))
    alert_commands = alerts.add_subparsers(dest="alerts_command", metavar="ACTION")
    alert_commands.add_parser("list", help=_("list them"))
    alert_create = alert_commands.add_parser("create", help=_("set the team's rules, or a service's (--service)"))
    alert_create.add_argument("--service", "-s", help=_("rules for this service, replacing the team's for it"))
    alert_create.add_argument("--on", metavar="EVENTS",
                              help=_("only these events, comma-separated: deploy_failed, crash_loop, memory_high, "
                                     "error_rate, backup_failed (default: all)"))
    alert_create.add_argument("--memory", type=int, metavar="PERCENT", help=_("memory alert at this share of the limit"))
    alert_create.add_argument("--error-rate", type=float, metavar="PERCENT",
                              help=_("error alert at this share of requests failing (5xx)"))
    alert_create.add_argument("--target", dest="targets", action="append", metavar="NAME",
                              help=_("send to this target of the team (repeatable; default: every target)"))
    for kind, words in (("email", _("send to this e-mail address too")), ("slack", _("send to this Slack webhook URL")),
                        ("discord", _("send to this Discord webhook URL")),
                        ("teams", _("send to this Microsoft Teams (Workflows) webhook URL")),
                        ("webhook", _("POST JSON to this https:// URL"))):
        alert_create.add_argument(f"--{kind}", dest=f"new_{kind}", action="append", metavar="ADDRESS", help=words)
    alert_delete = alert_commands.add_parser("delete", help=_("remove rules: by id, or a service's name"))
    alert_delete.add_argument("rules", metavar="ID|SERVICE")
    alerts.set_defaults(func=cmd_alerts)

    events = with_service(commands.add_parser(
        "events", help=_("what happened to the service and who did it: deploys, crashes, changes")))
    events.add_argument("--all", action="store_true", help=_("the whole team's events, its audit log (owners)"))
    events.add_argument("--kind", "-k", help=_("only these kinds or families, comma-separated: deploy, instance, env"))
    events.add_argument("--since", help=_("from this time or duration back: 10m, 2h, 2026-01-31T12:00:00Z"))
    events.add_argument("--limit", "-n", type=int, default=50, help=_("at most this many (1 to 200)"))
    events.add_argument("--follow", "-f", action="store_true", help=_("keep printing new events"))
    events.add_argument("--interval", type=float, default=5.0, help=argparse.SUPPRESS)
    events.set_defaults(func=cmd_events)

    opener = with_service(commands.add_parser("open", help=_("open the service's address in a browser")))
    opener.add_argument("--print", dest="print_only", action="store_true", help=_("only print the address"))
    opener.set_defaults(func=cmd_open)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"hakobune: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
