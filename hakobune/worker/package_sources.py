"""Where builds install packages from: each ecosystem's public source by
default, or a mirror the administrator sets (PIP_INDEX_URL, NPM_REGISTRY,
RUBYGEMS_SOURCE, COMPOSER_REPOSITORY). A host that cannot reach a public
source (only some are reachable from a company network) names a mirror it
can reach.

`build_env(configured)` is the environment of the build steps that points
each tool at the configured mirrors (pip and uv, npm, pnpm and yarn read it
themselves; the Ruby and PHP plans hand RUBYGEMS_SOURCE and
COMPOSER_REPOSITORY to Bundler and Composer, see buildpacks/ruby.py and
php.py). `unreachable(lines, configured)` reads a failed install's output:
when the tool says it could not reach its source, it says which source, and
whether it is the host's (an administrator's setting) or one the app names
itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .builders.base import BuildError


@dataclass(frozen=True)
class Source:
    tool: str  # the tool that installs them
    setting: str  # the administrator's setting
    default: str  # the public source
    # Hosts of the public source (its index and where its files are downloaded from).
    public_hosts: tuple[str, ...]


SOURCES = {
    "pip": Source("pip", "PIP_INDEX_URL", "https://pypi.org/simple",
                  ("pypi.org", "files.pythonhosted.org")),
    "npm": Source("npm", "NPM_REGISTRY", "https://registry.npmjs.org/",
                  ("registry.npmjs.org", "registry.yarnpkg.com")),
    "rubygems": Source("Bundler", "RUBYGEMS_SOURCE", "https://rubygems.org/",
                       ("rubygems.org", "index.rubygems.org")),
    "composer": Source("Composer", "COMPOSER_REPOSITORY", "https://repo.packagist.org",
                       ("repo.packagist.org", "packagist.org", "api.github.com", "codeload.github.com", "github.com")),
}

# The environment variables each tool reads its source from.
_TOOL_ENV = {
    "pip": ("PIP_INDEX_URL", "UV_DEFAULT_INDEX"),
    "npm": ("NPM_CONFIG_REGISTRY", "YARN_REGISTRY"),
    "rubygems": ("RUBYGEMS_SOURCE",),
    "composer": ("COMPOSER_REPOSITORY",),
}


def build_env(configured: dict[str, str] | None) -> dict[str, str]:
    """The build steps' environment for the mirrors that are set ("" or
    missing: the public source, and nothing is added)."""
    env = {}
    for name, url in (configured or {}).items():
        url = (url or "").strip()
        if url and name in _TOOL_ENV:
            for variable in _TOOL_ENV[name]:
                env[variable] = url
    return env


@dataclass(frozen=True)
class Unreachable:
    """An install that failed because its package source did not answer."""

    source_name: str  # a key of SOURCES
    source: str  # what did not answer: a URL or a host
    package: str  # the package it was fetching, when the tool says
    hosts: bool  # True: the host's own source (its setting); False: one the app names

    @property
    def rule(self) -> str:
        if not self.hosts:
            return "build.app_source_unreachable"
        return "build.source_unreachable_package" if self.package else "build.source_unreachable"

    @property
    def params(self) -> dict[str, str]:
        source = SOURCES[self.source_name]
        return {"tool": source.tool, "source": self.source, "setting": source.setting, "package": self.package}

    def in_english(self) -> str:
        p = self.params
        if not self.hosts:
            return (f"Installing the app's dependencies failed: {p['tool']} could not reach {p['source']}, a package "
                    f"source the app's own files name (not this host's, which {p['setting']} sets). Check that "
                    "address, or take the package from the host's source.")
        fetching = f" to fetch {p['package']}" if p["package"] else ""
        return (f"Installing the app's dependencies failed: {p['tool']} could not reach {p['source']}{fetching}, "
                f"the package source this host gives it ({p['setting']}). This is not your app: an administrator "
                f"sets {p['setting']} to a mirror this host can reach; then deploy again.")


_NETWORK_FAILURE = r"(?:Name or service not known|Temporary failure in name resolution|Failed to establish a new " \
                   r"connection|NameResolutionError|Connection refused|timed out|No route to host)"
_PATTERNS = [
    # Bundler 2.3: "Could not reach host index.rubygems.org. Check your network connection and try again."
    ("rubygems", re.compile(r"Could not reach host (?P<source>[\w.-]+?)\.? Check your network connection")),
    # Newer Bundler: "Could not fetch specs from https://rubygems.org/ due to underlying error <...>"
    ("rubygems", re.compile(r"Could not fetch specs from (?P<source>https?://\S+?)/? due to underlying error")),
    # Composer: "curl error 6 while downloading https://repo.packagist.org/packages.json: Could not resolve host: ..."
    ("composer", re.compile(r"curl error \d+ while downloading (?P<source>https?://[^\s:/]+(?::\d+)?)\S*: "
                            r"(?:Could not resolve host|Failed to connect|Connection timed out|Couldn't connect|"
                            r"Resolving timed out|Connection refused)")),
    ("composer", re.compile(r"The \"(?P<source>https?://[^\s\"/]+)\S*\" file could not be downloaded \((?:"
                            r"php_network_getaddresses|failed to open stream: Connection)")),
    # npm: "network request to https://registry.npmjs.org/express failed, reason: getaddrinfo ENOTFOUND ..."
    ("npm", re.compile(r"network request to (?P<source>https?://[^\s/]+)/(?P<package>@?[\w.-]+(?:%2[fF][\w.-]+)?)\S* "
                       r"failed, reason: (?:getaddrinfo|connect|.*ETIMEDOUT|.*ECONNREFUSED)")),
]
# pip names no index in its error; it tried the index it was given.
_PIP_UNREACHABLE = re.compile(r"after connection broken by '\w*(?:Error|Exception)\(.*" + _NETWORK_FAILURE)
_PIP_NOT_FOUND = re.compile(r"No matching distribution found for (?P<package>\S+)")
_PIP_INDEX = re.compile(r"Looking in indexes: (?P<source>\S+)")


def unreachable(lines: list[str], configured: dict[str, str] | None = None) -> Unreachable | None:
    """What a failed install's output (its last lines) says about its package
    source: an Unreachable when the tool could not reach it, else None. Lines
    a tool wrapped at the terminal's width are read joined too."""
    configured = {name: (url or "").strip() for name, url in (configured or {}).items()}
    spaced = " ".join(line.strip() for line in lines)
    tight = "".join(line.strip() for line in lines)
    for name, pattern in _PATTERNS:
        match = pattern.search(spaced) or pattern.search(tight)
        if match:
            package = match.groupdict().get("package") or ""
            return _found(name, match["source"], package.replace("%2f", "/").replace("%2F", "/"), configured)
    if _PIP_UNREACHABLE.search(spaced):
        missing = _PIP_NOT_FOUND.search(spaced)
        index = _PIP_INDEX.search(spaced)
        source = index["source"] if index else (configured.get("pip") or SOURCES["pip"].default)
        return _found("pip", source, missing["package"] if missing else "", configured)
    return None


def _found(name: str, source: str, package: str, configured: dict[str, str]) -> Unreachable:
    return Unreachable(name, source.rstrip("/") if "://" in source else source, package,
                       hosts=_is_hosts(name, source, configured))


def _host(address: str) -> str:
    return (urlsplit(address).hostname or "") if "://" in address else address.lower()


def _is_hosts(name: str, source: str, configured: dict[str, str]) -> bool:
    """Whether `source` is the host's own: its mirror, or the public source."""
    host = _host(source)
    mirror = _host(configured.get(name, ""))
    return host == mirror or host in SOURCES[name].public_hosts


class PackageSourceUnreachable(BuildError):
    """A build step failed because its package source did not answer: the
    host's (a platform fault, for an administrator's setting) or one the app
    names (the app's). In the registry of diagnoses by `rule`."""

    def __init__(self, found: Unreachable, *, log_tail: list[str] | None = None):
        super().__init__(found.in_english(), log_tail=log_tail, user_error=not found.hosts)
        self.found = found
        self.rule = found.rule
        self.params = found.params
