"""The SSRF guard: every URL Hakobune fetches (or sends a notification to) on a
person's behalf passes here first. A URL is refused unless its scheme is allowed, its host is spelled as a
plain name or a canonical IP address, and every address it resolves to is a
public one; an admin allow-list can open a named host. The check happens before
any connection, and the caller connects to the address that was checked (see
`GuardedURL.pins`), so a DNS answer that changes in between cannot move the
fetch somewhere else. The URL handed back names the host as it was checked:
in lower case and without a trailing dot.

A library that resolves names itself (requests, under apprise's notifiers) is
held to the checked addresses by `connecting_only_to`: within it, a name
lookup answers the checked host with its checked addresses and refuses every
other name (a redirect's, a proxy's) before any packet leaves."""

from __future__ import annotations

import contextvars
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

BLOCKED_NAMES = {"metadata.google.internal", "metadata", "instance-data", "metadata.goog"}
# What an IPv4 literal looks like when it is written oddly: hex, octal, fewer
# than four parts, or one big number. Such hosts are refused outright.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)

Resolver = Callable[[str, int], Iterable[str]]


class UnsafeURL(ValueError):
    """The URL may not be fetched; the message says why, in a person's words."""


@dataclass(frozen=True)
class Policy:
    schemes: frozenset[str] = frozenset({"https"})
    # Hosts ("host" or "host:port") that may be fetched over plain http, and
    # hosts that may be private or loopback addresses: an admin's allow-list
    # (the tests name their local git server here).
    http_hosts: frozenset[str] = frozenset()
    allowed_hosts: frozenset[str] = frozenset()
    # How the refusals word what Hakobune does with the address.
    does_not: str = "does not fetch from"
    only: str = "fetches only"
    example: str = "https://github.com/you/app.git"


@dataclass(frozen=True)
class GuardedURL:
    url: str  # without credentials
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def pinned(self) -> str:
        """host:port:address, as curl's --resolve (and git's http.curloptResolve) take it."""
        return self.pins[0]

    @property
    def pins(self) -> tuple[str, ...]:
        """The pin for both spellings of the host, `host` and `host.`: curl
        matches --resolve entries by the exact name, so a URL written with a
        trailing dot would otherwise skip the pin and ask DNS again (and a DNS
        answer that changed since the check would move the fetch)."""
        address = self.addresses[0]
        if ":" in address:
            address = f"[{address}]"
        if _ip_literal(self.host) is not None:
            return (f"{self.host}:{self.port}:{address}",)
        return (f"{self.host}:{self.port}:{address}", f"{self.host}.:{self.port}:{address}")


def default_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeURL(f"the host {host} could not be found ({exc.strerror}). Check the address.") from None
    return sorted({info[4][0] for info in infos})


def check_url(url: str, policy: Policy = Policy(), resolver: Resolver = default_resolver) -> GuardedURL:
    url = (url or "").strip()
    if not url:
        raise UnsafeURL("the URL is empty.")
    if url.startswith("-"):
        raise UnsafeURL(f"a URL cannot start with '-'. Give an https:// address, like {policy.example}.")
    if "::" in url.split("/", 1)[0] and "://" not in url.split("::", 1)[0]:
        # git's transport::address syntax (ext::, fd::) runs commands.
        raise UnsafeURL(f"'{url.split('::')[0]}::' addresses are not allowed. Give an https:// address.")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeURL("the URL has spaces or control characters in it.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not parts.scheme or "://" not in url:
        raise UnsafeURL(f"that is not a web address. Give an https:// address, like {policy.example}.")
    if scheme not in policy.schemes and scheme != "http":
        allowed = ", ".join(sorted(f"{s}://" for s in policy.schemes))
        raise UnsafeURL(f"{scheme}:// addresses are not allowed; Hakobune {policy.only} {allowed} addresses.")
    if not parts.netloc:
        raise UnsafeURL("the URL has no host name.")
    try:
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port or {"https": 443, "http": 80}.get(scheme, 0)
    except ValueError:
        raise UnsafeURL("the port in the URL is not a number between 1 and 65535.") from None
    if not host:
        raise UnsafeURL("the URL has no host name.")
    if host.startswith("-"):
        raise UnsafeURL("a host name cannot start with '-'.")

    host_port = f"{host}:{port}"
    if scheme not in policy.schemes and not (
        scheme == "http" and (host in policy.http_hosts or host_port in policy.http_hosts)
    ):
        allowed = ", ".join(sorted(f"{s}://" for s in policy.schemes))
        raise UnsafeURL(f"{scheme}:// addresses are not allowed; Hakobune {policy.only} {allowed} addresses.")

    address = _ip_literal(host)
    if address is None:
        if _NUMERIC_HOST.match(host):
            raise UnsafeURL(f"the host {host} is an IP address written in an unusual form; write it plainly.")
        if not all(_HOST_LABEL.match(label) for label in host.split(".")):
            raise UnsafeURL(f"the host name {host} is not valid.")

    if host in policy.allowed_hosts or host_port in policy.allowed_hosts:
        addresses = (str(address),) if address is not None else tuple(resolver(host, port))
        return _guarded(url, parts, scheme, host, port, addresses)

    if host in BLOCKED_NAMES or host.endswith(".internal") or host == "localhost" or host.endswith(".localhost"):
        raise UnsafeURL(f"the host {host} is an internal address, which Hakobune {policy.does_not}.")
    addresses = (str(address),) if address is not None else tuple(resolver(host, port))
    if not addresses:
        raise UnsafeURL(f"the host {host} has no address.")
    for candidate in addresses:
        reason = _why_not_public(ipaddress.ip_address(candidate.split("%")[0]))
        if reason:
            shown = host if address is not None else f"{host} (which points to {candidate})"
            raise UnsafeURL(f"the address {shown} is {reason}, which Hakobune {policy.does_not}.")
    return _guarded(url, parts, scheme, host, port, addresses)


def _guarded(url, parts, scheme, host, port, addresses) -> GuardedURL:
    # The URL given back names the host exactly as it was checked (lower
    # case, no trailing dot), so what fetches it asks for the checked name.
    netloc = host if ":" not in host else f"[{host}]"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    clean = parts._replace(netloc=netloc).geturl()
    return GuardedURL(
        url=clean,
        scheme=scheme,
        host=host,
        port=port,
        addresses=tuple(addresses),
        username=parts.username or "",
        password=parts.password or "",
    )


def _ip_literal(host: str):
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _why_not_public(address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return _why_not_public(mapped)
        if address.teredo:
            return _why_not_public(address.teredo[1])
    if address.is_loopback:
        return "a loopback address (this machine)"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_private or (isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7")):
        return "a private network address"
    if address.is_unspecified or address.is_reserved or address.is_multicast or not address.is_global:
        return "not a public address"
    return ""


# -- holding a library to the checked addresses ------------------------------------------

# {host: addresses} while a `connecting_only_to` block runs (in its context,
# which threads started with a copy of it share); None elsewhere.
_pins: contextvars.ContextVar[dict[str, tuple[str, ...]] | None] = contextvars.ContextVar("netguard_pins",
                                                                                          default=None)
_system_getaddrinfo = socket.getaddrinfo


def _pinned_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    pins = _pins.get()
    if pins is None:
        return _system_getaddrinfo(host, port, family, type, proto, flags)
    name = (host.decode() if isinstance(host, bytes) else str(host or "")).strip("[]").rstrip(".").lower()
    addresses = pins.get(name)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{name} is not the address that was checked")
    found = []
    for address in addresses:
        try:
            found += _system_getaddrinfo(address, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            continue  # an IPv6 address asked for as IPv4, or the reverse
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, f"{name} has no checked address of that family")
    return found


@contextmanager
def connecting_only_to(*checked: GuardedURL) -> Iterator[None]:
    """Within the block, and in threads that run with a copy of its context,
    a name lookup (socket.getaddrinfo, which requests and urllib3 ask) answers
    the checked hosts with the addresses that were checked, and refuses any
    other name: a redirect elsewhere, a proxy from the environment, a DNS
    answer that changed since the check. Outside such a block lookups are the
    system's own."""
    if socket.getaddrinfo is not _pinned_getaddrinfo:
        socket.getaddrinfo = _pinned_getaddrinfo
    token = _pins.set({guarded.host: guarded.addresses for guarded in checked})
    try:
        yield
    finally:
        _pins.reset(token)
