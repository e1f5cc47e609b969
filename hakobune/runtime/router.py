"""A client for Caddy's admin API. Hakobune owns one HTTP server in Caddy's
config, "hakobune", listening on the router port; each live service is one
route in it, found again by its @id. The whole config can be rebuilt from
what should be live, so a restarted Caddy loses nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

SERVER = "hakobune"
ROUTES_PATH = f"/config/apps/http/servers/{SERVER}/routes"
NOT_FOUND_BODY = "No service lives at this address. Check the name in the Hakobune portal.\n"


class RouterError(Exception):
    pass


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

    def load(self, routes: list[Route]) -> None:
        """Replaces Caddy's whole config with Hakobune's server and these routes."""
        self._check(self._request("POST", "/load", self.full_config(routes)), "load its configuration")

    def set_route(self, route: Route) -> None:
        """Points a hostname at these upstreams, adding the route if it is new."""
        current = self.routes()
        if not current and not self.is_configured():
            self.load([route])
            return
        if route.hostname in current:
            response = self._request("PATCH", f"/id/{route_id(route.hostname)}", self.route_config(route))
        else:
            # New routes go first so that they come before the fallback.
            response = self._request("PUT", f"{ROUTES_PATH}/0", self.route_config(route))
        self._check(response, f"route {route.hostname}")

    def remove_route(self, hostname: str) -> None:
        response = self._request("DELETE", f"/id/{route_id(hostname)}")
        if response.status_code not in (200, 404):
            self._check(response, f"remove the route of {hostname}")

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
