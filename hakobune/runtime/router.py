"""A client for Caddy's admin API. Hakobune owns one HTTP server in Caddy's
config, "hakobune", listening on the router port; each live service is one
route in it, found again by its @id. The whole config can be rebuilt from
what should be live, so a restarted Caddy loses nothing.

Every route is checked before Caddy sees it (route_problems: host names,
upstreams, a host claimed twice); one that fails is left out and reported,
never the whole config. The whole config goes to Caddy in one POST /load,
which Caddy applies atomically (a config it refuses leaves the running one in
place); should Caddy still refuse a route, the route it names is left out too
and the rest loaded. The last config Caddy took is kept on disk (state_dir/
last-good.json), so a restarted Caddy starts from it and a refused config
never leaves it empty."""

from __future__ import annotations

import ipaddress
import json
import os
import re
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
    result = []
    for route in kept:
        if owners[route.hostname] != route.hostname or route.hostname in refused:
            refused[route.hostname] = f"{route.hostname} is routed to another service already"
            continue
        taken = [host for host in (*route.aliases, *route.redirects) if owners.get(host, route.hostname) != route.hostname]
        if taken:
            refused[route.hostname] = f"{', '.join(taken)} is routed to another service already"
            continue
        for host in (*route.aliases, *route.redirects):
            owners[host] = route.hostname
        result.append(route)
    return result, refused


_REFUSED_ROUTE = re.compile(rf"server {SERVER}: [^:]*: route (\d+):")


def refused_route_index(message: str) -> int | None:
    """The position of the route Caddy's error names in Hakobune's server
    ("... server hakobune: setting up route handlers: route 3: ..."), if it names one."""
    found = _REFUSED_ROUTE.search(message or "")
    return int(found.group(1)) if found else None


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

    def route_config(self, route: Route) -> dict:
        proxy = {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": upstream} for upstream in route.upstreams],
            "load_balancing": {"selection_policy": {"policy": "round_robin"}},
            "headers": {"request": {"delete": [
                WAKER_HEADER, _WAKER_HEADER_UNDERSCORED, WAKE_HOST_HEADER, _WAKE_HOST_HEADER_UNDERSCORED,
            ]}},
        }
        handle = [proxy]
        if route.asleep:
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
        if route.redirects:
            # Old addresses answer with a redirect to the service's own.
            handle = [{
                "handler": "subroute",
                "routes": [{
                    "match": [{"host": list(route.redirects)}],
                    "handle": [{
                        "handler": "static_response", "status_code": 308,
                        "headers": {"Location": [self.address_of(route.hostname) + "{http.request.uri}"]},
                    }],
                    "terminal": True,
                }],
            }, *handle]
        return {
            "@id": route_id(route.hostname),
            "match": [{"host": [route.hostname, *route.aliases, *route.redirects]}],
            "handle": handle,
            "terminal": True,
        }

    def fallback_route(self) -> dict:
        return {
            "@id": "hakobune-fallback",
            "handle": [{"handler": "static_response", "status_code": 404, "body": NOT_FOUND_BODY}],
        }

    def full_config(self, routes: list[Route]) -> dict:
        admin_listen = urlsplit(self.admin_url).netloc
        server = {
            "listen": [f":{self.listen_port}"],
            "routes": [self.route_config(route) for route in routes] + [self.fallback_route()],
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

    def _request(self, method: str, path: str, payload=None) -> requests.Response:
        try:
            return self.http.request(
                method,
                self.admin_url + path,
                data=None if payload is None else json.dumps(payload),
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise RouterError(f"the router (Caddy) does not answer at {self.admin_url}: {exc}") from exc

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
            index = refused_route_index(response.text)
            if index is None or index >= len(routes) or len(refused) >= MAX_REFUSED:
                self._check(response, "load its configuration")
            bad = routes.pop(index)
            refused[bad.hostname] = f"the router (Caddy) refused its route: {_caddy_error(response.text)}"

    def set_route(self, route: Route) -> None:
        """Points a hostname at these upstreams, adding the route if it is new.
        A restarted Caddy that lost its config gets the last good one back
        first, so one deploy never leaves it serving that deploy alone."""
        problems = route_problems(route)
        if problems:
            raise RouterError(f"the router cannot serve {route.hostname}: {'; '.join(problems)}", permanent=True)
        current = self.routes()
        if not current and not self.is_configured() and not self.restore():
            self.load([route])
            return
        current = current or self.routes()
        if route.hostname in current:
            response = self._request("PATCH", f"/id/{route_id(route.hostname)}", self.route_config(route))
        else:
            # New routes go first so that they come before the fallback.
            response = self._request("PUT", f"{ROUTES_PATH}/0", self.route_config(route))
        self._check(response, f"route {route.hostname}")
        self.keep_current()

    def remove_route(self, hostname: str) -> None:
        response = self._request("DELETE", f"/id/{route_id(hostname)}")
        if response.status_code not in (200, 404):
            self._check(response, f"remove the route of {hostname}")
        if response.status_code == 200:
            self.keep_current()

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

    def keep_current(self) -> None:
        """Keeps what Caddy runs now as the last good config (after a route
        changed one by one)."""
        if self.last_good_path is None:
            return
        response = self._request("GET", "/config/")
        if response.status_code == 200 and response.text.strip() not in ("", "null"):
            self._keep(response.json())

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
        response = self._request("GET", ROUTES_PATH)
        if response.status_code != 200 or response.text.strip() in ("", "null"):
            return {}
        result = {}
        for route in response.json():
            hosts = [host for matcher in route.get("match", []) for host in matcher.get("host", [])]
            for handler in route.get("handle", []):
                if handler.get("handler") == "reverse_proxy":
                    upstreams = tuple(upstream["dial"] for upstream in handler.get("upstreams", []))
                    for host in hosts:
                        result[host] = upstreams
        return result


def _caddy_error(text: str) -> str:
    try:
        message = json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        message = text
    # Its last clause says what was wrong ("... host at index 0 is repeated ...").
    return message.strip().rsplit(": provision ", 1)[-1][:300]
