"""A client for Caddy's admin API. Hakobune owns one HTTP server in Caddy's
config, "hakobune", listening on the router port. The whole config is built
from what should be live (a list of Route), so a restarted Caddy loses nothing.

The host lookup is one step, whatever the number of services: Caddy would try
a server's routes in turn, each with its own host matcher, so a request for
the last of 200 services would be matched against 199 others first. Instead
one `map` handler looks the request's host up among every routed host and
names what to do with it (its "kind": proxy to n instances, wake, redirect)
and where (the dial addresses, or the redirect's target), in placeholders; a
few fixed routes, one per kind in use, act on them, and a host no service has
gets the platform's 404. Host names are compared exactly (lower case, as the
checks below require and browsers send them); a host sent with capitals takes
a second map of case-insensitive patterns, so it still reaches its service.
Each host's entry in the map names its service, so the routes can be read
back from Caddy's config (routes_of).

Every route is checked before Caddy sees it (route_problems: host names,
upstreams, a host claimed twice); one that fails is left out and reported,
never the whole config. The whole config goes to Caddy in one POST /load,
which Caddy applies atomically (a config it refuses leaves the running one in
place); should Caddy still refuse a route, the map entry it names is traced
to its route, which is left out too, and the rest loaded. One deploy's change
(set_route, remove_route) reads Caddy's config, changes its route and writes
the whole config back with If-Match, so two changes at once never lose one
another's route (the later is refused with 412 and done again). The last
config Caddy took is kept on disk (state_dir/last-good.json), so a restarted
Caddy starts from it and a refused config never leaves it empty."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import random
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

SERVER = "hakobune"
ROUTES_PATH = f"/config/apps/http/servers/{SERVER}/routes"
NOT_FOUND_BODY = "No service lives at this address. Check the name in the Hakobune portal.\n"


class RouterError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        # True: the route itself is wrong, and trying again cannot help.
        self.permanent = permanent


@dataclass(frozen=True)
class Route:
    hostname: str
    upstreams: tuple[str, ...]  # "127.0.0.1:32768"
    # A sleeping service (scaled to zero): requests go to the waker (the
    # portal) under WAKE_PREFIX, which starts the service and answers them.
    asleep: bool = False
    # The service's custom domains, served by the same route.
    aliases: tuple[str, ...] = ()
    # Its old addresses: answered with a permanent redirect to `hostname`.
    redirects: tuple[str, ...] = ()


WAKE_PREFIX = "/_hakobune/wake"
# The router's word to the waker: a sleeping service's route sets this header
# to a secret only the router and the portal know (overwriting any copy a
# client sent), and every other route deletes it, so no service ever sees it.
# The waker answers nothing without it.
WAKER_HEADER = "X-Hakobune-Waker"
# Go (Caddy) keeps a name spelt with underscores apart from the hyphenated one,
# while Django reads both as HTTP_X_HAKOBUNE_WAKER: deleted too.
_WAKER_HEADER_UNDERSCORED = WAKER_HEADER.replace("-", "_")
# The host a sleeping service was asked at, which the router passes to the
# waker while it sends the request itself to the portal's own name (a custom
# domain is no name the portal answers at).
WAKE_HOST_HEADER = "X-Hakobune-Wake-Host"
_WAKE_HOST_HEADER_UNDERSCORED = WAKE_HOST_HEADER.replace("-", "_")
PORTAL_HOST = "127.0.0.1"


def route_id(hostname: str) -> str:
    return f"hakobune-route-{hostname}"


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DIAL_HOST = re.compile(r"^[a-z0-9.-]+$")
LAST_GOOD = "last-good.json"
# How many routes Caddy may refuse one by one before a load gives up.
MAX_REFUSED = 20


def host_problem(host: str) -> str | None:
    """Why `host` cannot be matched by the router, or None: a lower-case DNS
    name of labels of letters, digits and hyphens (what the portal's forms
    let through; anything else slipped past them)."""
    if not isinstance(host, str) or not host:
        return "an empty host name"
    if len(host) > 253 or host != host.strip().lower():
        return f"{host!r} is not a valid host name"
    if not all(_LABEL.match(label) for label in host.split(".")):
        return f"{host!r} is not a valid host name"
    return None


def upstream_problem(dial: str) -> str | None:
    """Why `dial` is no upstream the router can send to, or None: host:port,
    the host an IP address (IPv6 in brackets) or a name, the port 1–65535."""
    if not isinstance(dial, str) or "://" in dial or "/" in dial or any(c.isspace() for c in dial):
        return f"the upstream {dial!r} is not host:port"
    host, sep, port = dial.rpartition(":")
    if not sep or not host or not port.isdigit():
        return f"the upstream {dial!r} is not host:port"
    if not 0 < int(port) < 65536:
        return f"the upstream {dial!r} has no valid port"
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"the upstream {dial!r} has no valid address"
    elif not _DIAL_HOST.match(host):
        return f"the upstream {dial!r} has no valid address"
    return None


def route_problems(route: Route) -> list[str]:
    """What is wrong with one route on its own."""
    problems = []
    hosts = [route.hostname, *route.aliases, *route.redirects]
    for host in hosts:
        problem = host_problem(host)
        if problem:
            problems.append(problem)
    repeated = sorted({host for host in hosts if hosts.count(host) > 1})
    if repeated:
        problems.append(f"{', '.join(repeated)} is named twice (as its address, a custom domain or an old address)")
    if not route.upstreams:
        problems.append("it has no upstream")
    for dial in route.upstreams:
        problem = upstream_problem(dial)
        if problem:
            problems.append(problem)
    return problems


def screen(routes: list[Route]) -> tuple[list[Route], dict[str, str]]:
    """The routes that may go to the router, and {hostname: why} of those left
    out: a route with a problem of its own, or claiming a host that another
    route claimed before it (a service's own address wins over another's
    custom domain or old address)."""
    kept, refused = [], {}
    for route in routes:
        problems = route_problems(route)
        if problems:
            refused[route.hostname] = "; ".join(problems)
        else:
            kept.append(route)
    owners: dict[str, str] = {}
    for route in kept:  # own addresses first
        owners.setdefault(route.hostname, route.hostname)
    result, served = [], set()
    for route in kept:
        if route.hostname in served:
            continue  # the same address twice: the first is served (and nothing to tell its service)
        if owners[route.hostname] != route.hostname or route.hostname in refused:
            refused[route.hostname] = f"{route.hostname} is routed to another service already"
            continue
        taken = [host for host in (*route.aliases, *route.redirects) if owners.get(host, route.hostname) != route.hostname]
        if taken:
            refused[route.hostname] = f"{', '.join(taken)} is routed to another service already"
            continue
        for host in (*route.aliases, *route.redirects):
            owners[host] = route.hostname
        served.add(route.hostname)
        result.append(route)
    return result, refused


# -- the host lookup ------------------------------------------------------------

# What the map names for each host (placeholders "{hakobune_<name>}"; the
# case-insensitive map's are "{hakobune_ci_<name>}"), then one dial address per
# instance ("up_0", "up_1", ...). Host names hold no underscore, so no output
# can name a placeholder (which Caddy would refuse as a loop).
KIND, SERVICE, LOCATION = "kind", "service", "location"
# The variable the fixed routes match on: the kind, copied once per request
# from whichever map found the host (a plain lookup, not a scan of the map).
ROUTE_VAR = "hakobune_route"
HOSTS_ID = "hakobune-hosts"
FOLDED_HOSTS_ID = "hakobune-hosts-folded"
FALLBACK_ID = "hakobune-fallback"
REDIRECT = "redirect"
# How long a change (set_route, remove_route) keeps trying when other changes
# keep coming between its read and its write, and the longest pause between tries.
CHANGE_PATIENCE = 15.0
CHANGE_PAUSE = 0.1
CHANGE_LOCK = "change.lock"
# How many connections a request to the admin API may try.
ADMIN_ATTEMPTS = 3


def _placeholder(name: str, folded: bool = False) -> str:
    return "{hakobune_" + ("ci_" if folded else "") + name + "}"


def _up(index: int) -> str:
    return f"up_{index}"


def kind_of(route: Route) -> str:
    """The fixed route that serves `route`: "proxy-<instances>" or "wake-<upstreams>"."""
    return f"{'wake' if route.asleep else 'proxy'}-{len(route.upstreams)}"


_REFUSED_MAPPING = re.compile(r"mapping (\d+)")


def refused_mapping_index(message: str) -> int | None:
    """The position of the host entry Caddy's error names in the map
    ("... loading module 'map': ...: mapping 3 has a duplicate input ..."), if it names one."""
    if "'map'" not in (message or "") and "http.handlers.map" not in (message or ""):
        return None
    found = _REFUSED_MAPPING.search(message)
    return int(found.group(1)) if found else None


def routes_of(server_routes: list | None) -> list[Route]:
    """The routes a config of Hakobune's server holds, read back from its
    host map (each entry names its service); or, from a config written before
    the map (one route per service, "@id": "hakobune-route-<host>"), from
    those routes."""
    server_routes = server_routes or []
    for entry in server_routes:
        for handler in entry.get("handle", []):
            if handler.get("handler") == "map" and handler.get("destinations", [None])[0] == _placeholder(KIND):
                return _routes_of_map(handler)
    return _routes_of_legacy(server_routes)


def _routes_of_map(handler: dict) -> list[Route]:
    names = [destination.strip("{}").removeprefix("hakobune_") for destination in handler["destinations"]]
    found: dict[str, dict] = {}
    for mapping in handler.get("mappings", []):
        outputs = dict(zip(names, mapping.get("outputs", [])))
        host, kind, service = mapping.get("input", ""), outputs.get(KIND) or "", outputs.get(SERVICE) or ""
        entry = found.setdefault(service, {"upstreams": (), "asleep": False, "aliases": [], "redirects": []})
        if kind == REDIRECT:
            entry["redirects"].append(host)
            continue
        if host != service:
            entry["aliases"].append(host)
            continue
        count = int(kind.rpartition("-")[2] or 0)
        entry["upstreams"] = tuple(outputs.get(_up(index)) or "" for index in range(count))
        entry["asleep"] = kind.startswith("wake-")
    return [
        Route(service, entry["upstreams"], asleep=entry["asleep"], aliases=tuple(entry["aliases"]),
              redirects=tuple(entry["redirects"]))
        for service, entry in found.items()
    ]


def _routes_of_legacy(server_routes: list) -> list[Route]:
    routes = []
    for entry in server_routes:
        hostname = (entry.get("@id") or "").removeprefix("hakobune-route-")
        if not entry.get("@id", "").startswith("hakobune-route-"):
            continue
        hosts = [host for matcher in entry.get("match", []) for host in matcher.get("host", [])]
        redirects, upstreams, asleep = [], (), False
        for handler in entry.get("handle", []):
            if handler.get("handler") == "subroute":
                redirects = [host for route in handler.get("routes", []) for matcher in route.get("match", [])
                             for host in matcher.get("host", [])]
            elif handler.get("handler") == "rewrite":
                asleep = True
            elif handler.get("handler") == "reverse_proxy":
                upstreams = tuple(upstream["dial"] for upstream in handler.get("upstreams", []))
        aliases = tuple(host for host in hosts if host != hostname and host not in redirects)
        routes.append(Route(hostname, upstreams, asleep=asleep, aliases=aliases, redirects=tuple(redirects)))
    return routes


def config_etag(body: bytes, path: str = "/config/") -> str:
    """The ETag Caddy 2.6 gives the config at `path` (a 32-bit FNV-1a hash of
    the JSON it answers GET with), for an If-Match on the write that follows.
    Caddy 2.6 sends it as an HTTP trailer, which no Python HTTP client hands over."""
    value = 0x811C9DC5
    for byte in body:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f'"{path} {value:08x}"'


class CaddyRouter:
    def __init__(
        self,
        admin_url: str,
        listen_port: int,
        *,
        access_log: str | None = None,
        timeout: float = 5.0,
        https: bool = False,
        https_port: int = 443,
        waker_secret: str = "",
        state_dir: str | Path | None = None,
    ):
        self.admin_url = admin_url.rstrip("/")
        self.listen_port = listen_port
        self.access_log = access_log
        self.timeout = timeout
        # With a real BASE_DOMAIN: Caddy's automatic HTTPS gets a certificate
        # for every routed hostname (custom domains included) and redirects
        # plain HTTP on the listen port to it. Off for *.localhost.
        self.https = https
        self.https_port = https_port
        self.waker_secret = waker_secret
        # Where the last config Caddy took is kept (None: nowhere).
        self.state_dir = Path(state_dir) if state_dir else None
        self.http = requests.Session()
        # The admin API is on loopback; never send it through a proxy.
        self.http.trust_env = False

    # -- config as data -------------------------------------------------------

    def address_of(self, hostname: str) -> str:
        """The scheme, host and port a browser reaches `hostname` at here."""
        scheme, port = ("https", self.https_port) if self.https else ("http", self.listen_port)
        return f"{scheme}://{hostname}" + ("" if port == {"http": 80, "https": 443}[scheme] else f":{port}")

    def host_entries(self, routes: list[Route]) -> list[tuple[str, dict[str, str]]]:
        """(host, {name: output}) for every host the routes name, in order: a
        service's own address and custom domains go to its upstreams, its old
        addresses to a redirect."""
        entries = []
        for route in routes:
            served = {KIND: kind_of(route), SERVICE: route.hostname, LOCATION: ""}
            served.update({_up(index): dial for index, dial in enumerate(route.upstreams)})
            for host in (route.hostname, *route.aliases):
                entries.append((host, served))
            for host in route.redirects:
                entries.append((host, {KIND: REDIRECT, SERVICE: route.hostname,
                                       LOCATION: self.address_of(route.hostname)}))
        return entries

    def host_map(self, routes: list[Route], *, folded: bool = False) -> dict:
        """The map handler: the request's host to what the fixed routes need.
        Folded: case-insensitive patterns, for a host sent with capitals."""
        width = max((len(route.upstreams) for route in routes), default=1)
        names = [KIND, SERVICE, LOCATION, *(_up(index) for index in range(width))]
        mappings = []
        for host, outputs in self.host_entries(routes):
            mapping = {"input_regexp": "(?i)^" + re.escape(host) + "$"} if folded else {"input": host}
            mapping["outputs"] = [outputs.get(name, "") for name in names]
            mappings.append(mapping)
        return {
            "handler": "map",
            "source": "{http.request.host}",
            "destinations": [_placeholder(name, folded) for name in names],
            "mappings": mappings,
            "defaults": [""] * len(names),
        }

    def _proxy(self, count: int) -> dict:
        # Whichever map found the host, the other's placeholder is empty.
        return {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": _placeholder(_up(index)) + _placeholder(_up(index), True)} for index in range(count)],
            "load_balancing": {"selection_policy": {"policy": "round_robin"}},
            "headers": {"request": {"delete": [
                WAKER_HEADER, _WAKER_HEADER_UNDERSCORED, WAKE_HOST_HEADER, _WAKE_HOST_HEADER_UNDERSCORED,
            ]}},
        }

    def kind_route(self, kind: str) -> dict:
        """The fixed route for one kind: to n instances (round robin, the
        waker's headers deleted), to the waker, or the redirect of an old address."""
        if kind == REDIRECT:
            # Old addresses answer with a redirect to the service's own.
            handle = [{
                "handler": "static_response", "status_code": 308,
                "headers": {"Location": [_placeholder(LOCATION) + _placeholder(LOCATION, True) + "{http.request.uri}"]},
            }]
        else:
            asleep, _, count = kind.partition("-")
            proxy = self._proxy(int(count))
            handle = [proxy]
            if asleep == "wake":
                # To the waker: under its prefix, with the router's secret (set
                # replaces whatever the client sent under that name).
                proxy["headers"]["request"] = {
                    "delete": [_WAKER_HEADER_UNDERSCORED, _WAKE_HOST_HEADER_UNDERSCORED],
                    "set": {
                        WAKER_HEADER: [self.waker_secret],
                        WAKE_HOST_HEADER: ["{http.request.hostport}"],
                        "Host": [PORTAL_HOST],
                    },
                }
                handle = [{"handler": "rewrite", "uri": WAKE_PREFIX + "{http.request.uri}"}, proxy]
        return {"@id": f"hakobune-{kind}", "match": [{"vars": {ROUTE_VAR: [kind]}}], "handle": handle, "terminal": True}

    def fallback_route(self) -> dict:
        return {
            "@id": FALLBACK_ID,
            "handle": [{"handler": "static_response", "status_code": 404, "body": NOT_FOUND_BODY}],
        }

    def server_routes(self, routes: list[Route]) -> list[dict]:
        """Hakobune's server's routes: the host lookup (exact, then the
        case-insensitive one for a host it did not find that has capitals),
        one route per kind in use, and the 404 for every other host."""
        if not routes:
            return [self.fallback_route()]
        lookup = {"@id": HOSTS_ID, "handle": [self.host_map(routes), {"handler": "vars", ROUTE_VAR: _placeholder(KIND)}]}
        if self.https:
            # Automatic HTTPS gets certificates for the hosts it finds in host
            # matchers: every routed host is named here (one matcher, which
            # Caddy searches by halves past 100 names).
            lookup["match"] = [{"host": sorted({host for host, _ in self.host_entries(routes)})}]
        folded = {
            "@id": FOLDED_HOSTS_ID,
            "match": [{"vars": {ROUTE_VAR: [""]}, "header_regexp": {"Host": {"pattern": "[A-Z]"}}}],
            "handle": [self.host_map(routes, folded=True), {"handler": "vars", ROUTE_VAR: _placeholder(KIND, True)}],
        }
        kinds = {kind_of(route) for route in routes}
        ordered = sorted(kinds, key=lambda kind: (kind.startswith("wake"), int(kind.rpartition("-")[2])))
        if any(route.redirects for route in routes):
            ordered.append(REDIRECT)
        return [lookup, folded, *(self.kind_route(kind) for kind in ordered), self.fallback_route()]

    def full_config(self, routes: list[Route]) -> dict:
        admin_listen = urlsplit(self.admin_url).netloc
        server = {
            "listen": [f":{self.listen_port}"],
            "routes": self.server_routes(routes),
        }
        if self.https:
            server["listen"] = [f":{self.https_port}"]
            server["automatic_https"] = {"skip": []}
        else:
            server["automatic_https"] = {"disable": True}
        config = {
            "admin": {"listen": admin_listen},
            "apps": {"http": {"servers": {SERVER: server}}},
        }
        if self.https:
            config["apps"]["http"]["http_port"] = self.listen_port
            config["apps"]["http"]["https_port"] = self.https_port
        if self.access_log:
            server["logs"] = {"default_logger_name": "hakobune_access"}
            config["logging"] = {
                "logs": {
                    # Caddy's default log (its output: var/log/router.log) would
                    # take every access entry too, unless told otherwise: each
                    # request would be encoded and written twice, once to a file
                    # that nothing rotates.
                    "default": {"exclude": ["http.log.access.hakobune_access"]},
                    "hakobune_access": {
                        "writer": {"output": "file", "filename": self.access_log},
                        "encoder": {"format": "json"},
                        "include": ["http.log.access.hakobune_access"],
                    }
                }
            }
        return config

    # -- admin API ------------------------------------------------------------

    def _request(self, method: str, path: str, payload=None, headers: dict | None = None) -> requests.Response:
        # Caddy restarts its admin endpoint with every config change, closing
        # the connections other processes held open to it: a connection that
        # breaks is tried again on a new one. (Every request here may be sent
        # twice: a load is the same config again, a change carries If-Match.)
        for attempt in range(ADMIN_ATTEMPTS):
            try:
                return self.http.request(
                    method,
                    self.admin_url + path,
                    data=None if payload is None else json.dumps(payload),
                    headers={"Content-Type": "application/json", **(headers or {})},
                    timeout=self.timeout,
                )
            except requests.ConnectionError as exc:
                failure = exc
                time.sleep(0.05 * (attempt + 1))
            except requests.RequestException as exc:
                failure = exc
                break
        raise RouterError(f"the router (Caddy) does not answer at {self.admin_url}: {failure}") from failure

    def _check(self, response: requests.Response, action: str) -> None:
        if response.status_code >= 400:
            raise RouterError(f"the router refused to {action}: {response.status_code} {response.text.strip()}")

    def is_configured(self) -> bool:
        response = self._request("GET", f"/config/apps/http/servers/{SERVER}")
        return response.status_code == 200 and response.text.strip() not in ("", "null")

    def load(self, routes: list[Route]) -> dict[str, str]:
        """Replaces Caddy's whole config with Hakobune's server and these
        routes, in one atomic load; returns {hostname: why} of the routes left
        out (each checked first, then any Caddy itself refuses). Raises
        RouterError when Caddy refuses the config for a reason no single route
        explains; it then keeps running the config it had."""
        routes, refused = screen(routes)
        while True:
            config = self.full_config(routes)
            response = self._request("POST", "/load", config)
            if response.status_code < 400:
                self._keep(config)
                return refused
            hostname = _refused_service(config, response.text)
            bad = next((route for route in routes if route.hostname == hostname), None)
            if bad is None or len(refused) >= MAX_REFUSED:
                self._check(response, "load its configuration")
            routes.remove(bad)
            refused[bad.hostname] = f"the router (Caddy) refused its route: {_caddy_error(response.text)}"

    def set_route(self, route: Route) -> None:
        """Points a hostname (and its custom domains and old addresses) at
        these upstreams, adding the route if it is new; the route takes its
        hosts from any other that still named them. A restarted Caddy that
        lost its config gets the last good one back first, so one deploy never
        leaves it serving that deploy alone."""
        problems = route_problems(route)
        if problems:
            raise RouterError(f"the router cannot serve {route.hostname}: {'; '.join(problems)}", permanent=True)
        claimed = {route.hostname, *route.aliases, *route.redirects}

        def change(current: list[Route]) -> list[Route]:
            changed, placed = [], False
            for other in current:
                if other.hostname == route.hostname:
                    changed.append(route)
                    placed = True
                elif other.hostname not in claimed:
                    changed.append(Route(
                        other.hostname, other.upstreams, asleep=other.asleep,
                        aliases=tuple(host for host in other.aliases if host not in claimed),
                        redirects=tuple(host for host in other.redirects if host not in claimed),
                    ))
            return changed if placed else [*changed, route]

        self._change(change, route.hostname, empty=lambda: self.load([route]))

    def remove_route(self, hostname: str) -> None:
        self._change(lambda current: [route for route in current if route.hostname != hostname], None, empty=None)

    def _change(self, change, hostname: str | None, empty) -> None:
        """Reads Caddy's config, changes its routes and writes it back whole,
        if no other change came in between (If-Match), else again after a
        pause. The processes of this host take turns (a lock file beside the
        last good config), so they seldom meet. An empty (restarted) Caddy
        gets the last good config first, or `empty()`."""
        with self._turn():
            self._change_now(change, hostname, empty)

    @contextmanager
    def _turn(self):
        if self.state_dir is None:
            yield
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            lock = open(self.state_dir / CHANGE_LOCK, "a")
        except OSError:
            yield  # If-Match alone keeps the changes apart
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _change_now(self, change, hostname: str | None, empty) -> None:
        deadline = time.monotonic() + CHANGE_PATIENCE
        while time.monotonic() < deadline:
            response = self._request("GET", "/config/")
            self._check(response, "show its configuration")
            config = json.loads(response.content or b"null") or {}
            server = config.get("apps", {}).get("http", {}).get("servers", {}).get(SERVER)
            if server is None:
                if self.restore():
                    continue
                if empty is not None:
                    refused = empty()
                    if hostname in (refused or {}):
                        raise RouterError(f"the router cannot serve {hostname}: {refused[hostname]}", permanent=True)
                return
            current = routes_of(server.get("routes"))
            routes = change(current)
            if routes == current:
                return
            kept, refused = screen(routes)
            if hostname in refused:
                raise RouterError(f"the router cannot serve {hostname}: {refused[hostname]}", permanent=True)
            new = self.full_config(kept)
            # Caddy 2.6 sends the ETag as a trailer (computed here); later ones as a header.
            etag = response.headers.get("ETag") or config_etag(response.content)
            written = self._request("POST", "/config/", new, headers={"If-Match": etag})
            if written.status_code == 412:
                # Another change came first: read it, and change that, after a
                # pause of its own so that writers meeting again part.
                time.sleep(random.uniform(0.2, 1.0) * CHANGE_PAUSE)
                continue
            if written.status_code >= 400 and hostname and _refused_service(new, written.text) == hostname:
                raise RouterError(
                    f"the router (Caddy) refused the route of {hostname}: {_caddy_error(written.text)}", permanent=True
                )
            self._check(written, f"route {hostname}" if hostname else "remove a route")
            self._keep(new)
            return
        raise RouterError(f"the router's configuration kept changing while {hostname or 'a route'} was written; "
                          "try again")

    # -- the last good config -------------------------------------------------

    @property
    def last_good_path(self) -> Path | None:
        return self.state_dir / LAST_GOOD if self.state_dir else None

    def _keep(self, config: dict) -> None:
        """Writes the config Caddy took, whole or not at all (a rename)."""
        path = self.last_good_path
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}")
            # It holds the waker's secret (the routes of sleeping services): for Hakobune's eyes only.
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(json.dumps(config))
            os.replace(partial, path)
        except OSError:
            pass  # a full disk must not fail a route change; the database still has every route

    def last_good(self) -> dict | None:
        path = self.last_good_path
        try:
            return json.loads(path.read_text()) if path else None
        except (OSError, ValueError):
            return None

    def restore(self) -> bool:
        """Loads the last good config into a Caddy that has none (restarted);
        returns whether it did."""
        config = self.last_good()
        if not config:
            return False
        # The admin address is this client's, whatever the file said.
        config["admin"] = {"listen": urlsplit(self.admin_url).netloc}
        response = self._request("POST", "/load", config)
        return response.status_code < 400

    def routes(self) -> dict[str, tuple[str, ...]]:
        """{host: upstreams} of every host Caddy routes now."""
        response = self._request("GET", f"/config/apps/http/servers/{SERVER}/routes")
        if response.status_code != 200 or response.text.strip() in ("", "null"):
            return {}
        return {
            host: route.upstreams
            for route in routes_of(response.json())
            for host in (route.hostname, *route.aliases, *route.redirects)
        }


def _refused_service(config: dict, message: str) -> str | None:
    """The service whose host entry Caddy's error names, if it names one."""
    index = refused_mapping_index(message)
    if index is None:
        return None
    # Both maps list the hosts in the same order; the exact one names the service.
    for entry in config["apps"]["http"]["servers"][SERVER]["routes"]:
        if entry.get("@id") == HOSTS_ID:
            host_map = entry["handle"][0]
            if index < len(host_map["mappings"]):
                outputs = dict(zip(host_map["destinations"], host_map["mappings"][index]["outputs"]))
                return outputs.get(_placeholder(SERVICE))
    return None


def _caddy_error(text: str) -> str:
    try:
        message = json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        message = text
    # Its last clause says what was wrong ("... mapping 3 has a duplicate input ...").
    return re.split(r": provision |: invalid configuration: ", message.strip())[-1][:300]
