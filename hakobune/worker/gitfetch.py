"""Fetching a git source: a shallow clone of one ref, hardened.

The URL passes the SSRF guard first and git is pinned to the address that was
checked. Git runs from an argument list with `--` before the URL, without the
user's or the system's config, without hooks, prompts or redirects, with only
https (and http for hosts an admin allowed), under a time and a size limit.
A token for a private repository travels in an HTTP header set through the
environment: never in the URL, the command line or the log."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .netguard import GuardedURL, Policy, Resolver, UnsafeURL, check_url, default_resolver
from .source import SourceError, check_tree

_REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*@\{)[A-Za-z0-9._/+-]{1,255}$")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_PASS_THROUGH_ENV = ("PATH", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "https_proxy", "HTTPS_PROXY",
                     "no_proxy", "NO_PROXY")


@dataclass(frozen=True)
class GitSource:
    url: str
    ref: str = "main"
    token: str = field(default="", repr=False)
    submodules: bool = False


@dataclass(frozen=True)
class FetchedGit:
    root: Path
    commit: str
    url: str  # without credentials


def validate_ref(ref: str) -> str:
    ref = (ref or "").strip()
    if not _REF.match(ref):
        raise SourceError(
            f"{ref!r} is not a branch, tag or commit name Hakobune takes. Use a name like main, v1.2 or a full commit hash."
        )
    return ref


def fetch_git(
    source: GitSource,
    dest: Path,
    *,
    policy: Policy,
    resolver: Resolver = default_resolver,
    timeout: float = 300,
    max_bytes: int = 1024 * 1024 * 1024,
    max_entries: int = 20_000,
    log: Callable[[str], None] = print,
) -> FetchedGit:
    guarded = _guard(source.url, policy, resolver)
    ref = validate_ref(source.ref)
    token = source.token or guarded.password
    dest.mkdir(parents=True, exist_ok=True)
    home = dest.parent / "git-home"
    home.mkdir(exist_ok=True)
    runner = _GitRunner(dest, home, guarded, policy, token=token, timeout=timeout, max_bytes=max_bytes, log=log)

    log(f"Fetching {guarded.url} at {ref}")
    runner.run(["init", "--quiet", "--template=", str(dest)], cwd=dest.parent)
    runner.run(["fetch", "--depth", "1", "--no-tags", "--no-recurse-submodules", "--progress", "--", guarded.url, ref])
    runner.run(["checkout", "--quiet", "--detach", "FETCH_HEAD"])
    commit = runner.run(["rev-parse", "HEAD"], quiet=True).strip()
    if source.submodules and (dest / ".gitmodules").is_file():
        _fetch_submodules(runner, dest, policy, resolver)
    shutil.rmtree(dest / ".git", ignore_errors=True)
    for nested in dest.rglob(".git"):
        if nested.is_dir() and not nested.is_symlink():
            shutil.rmtree(nested, ignore_errors=True)
        else:
            nested.unlink()
    check_tree(dest, max_entries=max_entries, max_bytes=max_bytes)
    log(f"✓ Commit {commit[:12]}")
    return FetchedGit(root=dest, commit=commit, url=guarded.url)


def _guard(url: str, policy: Policy, resolver: Resolver) -> GuardedURL:
    try:
        return check_url(url, policy, resolver)
    except UnsafeURL as exc:
        raise SourceError(f"Hakobune will not fetch {_mask_userinfo(url)!r}: {exc}") from None


def _fetch_submodules(runner: _GitRunner, dest: Path, policy: Policy, resolver: Resolver) -> None:
    listed = runner.run(["config", "--file", ".gitmodules", "--get-regexp", r"^submodule\..*\.url$"], quiet=True)
    for line in listed.splitlines():
        _, _, url = line.partition(" ")
        guarded = _guard(url, policy, resolver)
        runner.pins.append(guarded.pinned)
    runner.run(["submodule", "update", "--init", "--depth", "1", "--no-recommend-shallow"])


class _GitRunner:
    def __init__(self, dest, home, guarded: GuardedURL, policy: Policy, *, token, timeout, max_bytes, log):
        self.dest = dest
        self.home = home
        self.token = token
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.log = log
        self.pins = [guarded.pinned]
        protocols = ["https"]
        if guarded.scheme == "http":
            protocols.append("http")
        self.protocols = protocols

    def _env(self) -> dict[str, str]:
        env = {key: os.environ[key] for key in _PASS_THROUGH_ENV if key in os.environ}
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL="/dev/null",
            GIT_TERMINAL_PROMPT="0",
            GIT_ASKPASS="/bin/false",
            SSH_ASKPASS="/bin/false",
            GIT_SSH_COMMAND="/bin/false",
            GIT_ALLOW_PROTOCOL=":".join(self.protocols),
            GIT_PROTOCOL_FROM_USER="0",
            LC_ALL="C",
        )
        if self.token:
            basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
            env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader",
                       GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}")
        return env

    def _config(self) -> list[str]:
        options = [
            "protocol.allow=never",
            *(f"protocol.{name}.allow=always" for name in self.protocols),
            "http.followRedirects=false",
            "core.hooksPath=/dev/null",
            "core.fsmonitor=false",
            "core.symlinks=true",
            "submodule.recurse=false",
            "advice.detachedHead=false",
            *(f"http.curloptResolve={pin}" for pin in self.pins),
        ]
        return [part for option in options for part in ("-c", option)]

    def run(self, args: list[str], *, cwd: Path | None = None, quiet: bool = False) -> str:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise SourceError(f"Fetching the repository took longer than {self.timeout:.0f} s and was stopped.")
        command = ["git", *self._config(), *args]
        process = subprocess.Popen(
            command,
            cwd=cwd or self.dest,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        too_big = threading.Event()
        watcher = threading.Thread(target=self._watch_size, args=(process, too_big), daemon=True)
        watcher.start()
        try:
            stdout, stderr = process.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise SourceError(f"Fetching the repository took longer than {self.timeout:.0f} s and was stopped.")
        finally:
            watcher.join(timeout=1)
        if too_big.is_set():
            raise SourceError(
                f"The repository is larger than {self.max_bytes / 1e6:.0f} MB and was not fetched. "
                "Point Hakobune at a smaller repository or a subfolder of one."
            )
        text = self._mask(stderr.decode("utf-8", "replace"))
        if not quiet:
            for line in re.split(r"[\r\n]+", text):
                if line.strip() and not _is_progress_noise(line):
                    self.log(line.strip())
        if process.returncode != 0:
            raise SourceError(_explain_git_failure(text, args))
        return stdout.decode("utf-8", "replace")

    def _watch_size(self, process, too_big: threading.Event) -> None:
        while process.poll() is None:
            if _tree_size(self.dest) > self.max_bytes:
                too_big.set()
                process.kill()
                return
            time.sleep(0.25)

    def _mask(self, text: str) -> str:
        if self.token:
            text = text.replace(self.token, "****")
            text = text.replace(base64.b64encode(f"x-access-token:{self.token}".encode()).decode(), "****")
        return _mask_userinfo(text)


def _is_progress_noise(line: str) -> bool:
    return bool(re.match(r"^(remote: )?(Counting|Compressing|Receiving|Resolving|Enumerating) objects:\s+\d+% ", line)) and not line.rstrip().endswith("done.")


def _tree_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _mask_userinfo(text: str) -> str:
    return re.sub(r"(://)[^/@\s]+@", r"\1****@", text)


def _explain_git_failure(stderr: str, args: list[str]) -> str:
    lowered = stderr.lower()
    if "couldn't find remote ref" in lowered or "not our ref" in lowered or "unadvertised object" in lowered:
        ref = args[-1]
        return f"The repository has no branch, tag or commit called {ref}. Check the name (and that the commit is pushed)."
    if "authentication failed" in lowered or "could not read username" in lowered or " 401" in lowered or " 403" in lowered:
        return "The repository refused access. If it is private, give Hakobune a token that can read it."
    if "repository not found" in lowered or " 404" in lowered or "not found" in lowered:
        return "The repository was not found. Check the URL; if the repository is private, add a token."
    if "redirect" in lowered:
        return "The server answered with a redirect; Hakobune does not follow redirects. Give the repository's final https:// address."
    if "transport" in lowered and "not allowed" in lowered:
        return "That kind of git address is not allowed; give an https:// address."
    if "could not resolve host" in lowered:
        return "The repository's host could not be found. Check the URL."
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    detail = last[-1] if last else "git failed"
    return f"Fetching the repository failed: {detail}"
