"""Fetching a git source: a shallow clone of one ref, hardened.

The URL passes the SSRF guard first and git is pinned to the address that was
checked: git is given the URL as it was checked (host in lower case, no
trailing dot) and a pin for both spellings of the host, and each submodule's
URL is checked, pinned and given to git the same way. Git runs from an
argument list with `--` before the URL, without the user's or the system's
config, without hooks, prompts or redirects, with only https (and http for
hosts an admin allowed), under a time and a size limit.

A token for a private repository travels in an HTTP header set through the
environment (never in the URL, the command line or the log), and only for the
repository's own URL (`http.<url>.extraHeader`): a submodule, on another host
or on the same one, never receives it.

Proxies: the proxy variables of the worker's environment (http_proxy,
https_proxy, ALL_PROXY, NO_PROXY, ...) never reach git, and `http.proxy` is
set, so curl cannot take a proxy from anywhere else. With no proxy configured
for Hakobune, git connects directly to the checked address. With one
(SOURCE_GIT_PROXY), git goes through that proxy and only it. What is pinned
then depends on the proxy's kind: through socks5:// curl resolves the name
itself, so the pin holds and the proxy is asked for the checked address; through
http://, https:// or socks5h:// the proxy is asked for the checked host name
(never an unchecked one: the URL git has is the checked URL) and resolves it
itself, so which address that name reaches is the proxy's decision, and the
proxy's own rules must keep private ranges out."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
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
# No proxy variable is passed: curl would honour it and connect to the proxy
# instead of the pinned address.
_PASS_THROUGH_ENV = ("PATH", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO")
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


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
    proxy: str = "",
    log: Callable[[str], None] = print,
    should_stop: Callable[[], bool] | None = None,
) -> FetchedGit:
    """Fetches `source` into `dest`. `proxy` is the administrator's proxy
    for git (SOURCE_GIT_PROXY), or "" to connect directly. `should_stop` is
    asked while git runs: True (the build was cancelled) kills git and raises
    FetchStopped."""
    proxy = check_proxy(proxy)
    guarded = _guard(source.url, policy, resolver)
    ref = validate_ref(source.ref)
    token = source.token or guarded.password
    dest.mkdir(parents=True, exist_ok=True)
    home = dest.parent / "git-home"
    home.mkdir(exist_ok=True)
    runner = _GitRunner(dest, home, guarded, policy, token=token, timeout=timeout, max_bytes=max_bytes, log=log,
                        proxy=proxy, should_stop=should_stop)

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


def check_proxy(proxy: str) -> str:
    """The administrator's proxy for git, checked: "" or a proxy URL."""
    proxy = (proxy or "").strip()
    if not proxy:
        return ""
    scheme, _, rest = proxy.partition("://")
    if scheme.lower() not in PROXY_SCHEMES or not rest or any(ch.isspace() or ord(ch) < 32 for ch in proxy):
        raise ValueError(
            f"SOURCE_GIT_PROXY must be an http://, https://, socks5:// or socks5h:// address, not {_mask_userinfo(proxy)!r}."
        )
    return proxy


def _guard(url: str, policy: Policy, resolver: Resolver) -> GuardedURL:
    try:
        return check_url(url, policy, resolver)
    except UnsafeURL as exc:
        raise SourceError(f"Hakobune will not fetch {_mask_userinfo(url)!r}: {exc}") from None


def _fetch_submodules(runner: _GitRunner, dest: Path, policy: Policy, resolver: Resolver) -> None:
    listed = runner.run(["config", "--null", "--file", ".gitmodules", "--get-regexp", r"^submodule\..*\.url$"],
                        quiet=True)
    for entry in filter(None, listed.split("\0")):
        key, _, url = entry.partition("\n")
        name = key[len("submodule."):-len(".url")]
        guarded = _guard(url, policy, resolver)
        runner.pins.extend(guarded.pins)
        # Set before `submodule update --init`, which then keeps it: git
        # clones the submodule from the URL exactly as it was checked.
        runner.run(["config", f"submodule.{name}.url", guarded.url], quiet=True)
    runner.run(["submodule", "update", "--init", "--depth", "1", "--no-recommend-shallow"])


class _GitRunner:
    def __init__(self, dest, home, guarded: GuardedURL, policy: Policy, *, token, timeout, max_bytes, log, proxy="",
                 should_stop=None):
        self.dest = dest
        self.should_stop = should_stop
        self.home = home
        self.token = token
        self.repository_url = guarded.url
        self.proxy = proxy
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.log = log
        self.pins = list(guarded.pins)
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
        # Through the environment, not the command line, which others on the
        # host can read: the proxy's URL may hold its credentials.
        # Empty http.proxy: no proxy at all, whatever curl could find elsewhere.
        config = [("http.proxy", self.proxy)]
        if self.token:
            # For the repository's URL only: git matches http.<url>.* against
            # each remote's URL, so a submodule (another URL) gets no token.
            basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
            config.append((f"http.{self.repository_url}.extraHeader", f"Authorization: Basic {basic}"))
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
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
        stopped = threading.Event()
        if self.should_stop is not None and self.should_stop():
            raise FetchStopped("The fetch was stopped: the build was cancelled.")
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
        watcher = threading.Thread(target=self._watch_size, args=(process, too_big, stopped), daemon=True)
        watcher.start()
        try:
            stdout, stderr = process.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise SourceError(f"Fetching the repository took longer than {self.timeout:.0f} s and was stopped.")
        finally:
            watcher.join(timeout=1)
        if stopped.is_set():
            raise FetchStopped("The fetch was stopped: the build was cancelled.")
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

    def _watch_size(self, process, too_big: threading.Event, stopped: threading.Event) -> None:
        while process.poll() is None:
            if _tree_size(self.dest) > self.max_bytes:
                too_big.set()
                process.kill()
                return
            if self.should_stop is not None and self.should_stop():
                stopped.set()
                _kill_group(process)
                return
            time.sleep(0.25)

    def _mask(self, text: str) -> str:
        if self.token:
            text = text.replace(self.token, "****")
            text = text.replace(base64.b64encode(f"x-access-token:{self.token}".encode()).decode(), "****")
        return _mask_userinfo(text)


class FetchStopped(SourceError):
    """The build was cancelled while git ran; git and its helpers were killed."""


def _kill_group(process) -> None:
    """Kills git and the helpers it started (git-remote-https…): it runs in a
    session of its own."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


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
