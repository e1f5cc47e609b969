"""The router's configuration: every route checked before Caddy sees it, a
bad one left out and reported while the others are loaded in one atomic
load, a route Caddy itself refuses left out too, and the last good config
kept on disk for a restarted Caddy."""

import json

import pytest

from hakobune.platform.services.housekeeping import sync_router
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.services import create_service
from hakobune.runtime.router import (
    CaddyRouter, Route, RouterError, host_problem, refused_route_index, route_problems, screen, upstream_problem,
)

UP = ("127.0.0.1:32768",)


@pytest.mark.parametrize("host", ["web.acme.localhost", "shop.example.com", "a-b.c1.example", "x" * 63 + ".example"])
def test_good_host_names_pass(host):
    assert host_problem(host) is None


@pytest.mark.parametrize("host", ["", "bad host!", "Shop.example.com", "-a.example", "a..example", "a_b.example",
                                  "x" * 64 + ".example", "*.example.com", "web.acme.localhost\n", "é.example"])
def test_bad_host_names_are_named(host):
    assert host_problem(host)


@pytest.mark.parametrize("dial", ["127.0.0.1:8080", "[::1]:80", "web:8080"])
def test_good_upstreams_pass(dial):
    assert upstream_problem(dial) is None


@pytest.mark.parametrize("dial", ["127.0.0.1", "127.0.0.1:99999", "http://127.0.0.1:80", "127.0.0.1:0", ":80",
                                  "127.0.0.1:8080/x", "[zz]:80", "a b:80"])
def test_bad_upstreams_are_named(dial):
    assert upstream_problem(dial)


def test_a_host_named_twice_in_one_route_is_a_problem():
    # Caddy refuses the whole config for this ("host at index 0 is repeated").
    problems = route_problems(Route("web.acme.localhost", UP, aliases=("shop.example",), redirects=("shop.example",)))
    assert problems == ["shop.example is named twice (as its address, a custom domain or an old address)"]


def test_screening_leaves_out_bad_routes_and_keeps_the_rest():
    good = Route("web.acme.localhost", UP)
    bad_domain = Route("shop.acme.localhost", UP, aliases=("bad domain!",))
    thief = Route("blog.acme.localhost", UP, aliases=("web.acme.localhost",))
    no_upstream = Route("api.acme.localhost", ())
    kept, refused = screen([thief, good, bad_domain, no_upstream])
    assert kept == [good]
    assert set(refused) == {"shop.acme.localhost", "blog.acme.localhost", "api.acme.localhost"}
    assert "bad domain!" in refused["shop.acme.localhost"]
    assert "routed to another service" in refused["blog.acme.localhost"]


def test_caddys_error_names_the_route_it_refused():
    message = ("loading config: loading new config: loading http app module: provision http: server hakobune: "
               "setting up route matchers: route 2: loading matcher modules: module name 'host': ...")
    assert refused_route_index(message) == 2
    assert refused_route_index("loading config: unknown field \"x\"") is None


class FakeResponse:
    def __init__(self, status, payload=None):
        self.status_code = status
        self.text = json.dumps(payload) if payload is not None else ""

    def json(self):
        return json.loads(self.text)


class FakeCaddy:
    """Caddy's admin API as the router client uses it: /load refuses configs
    that hold a refused host (naming the route, as Caddy does)."""

    def __init__(self, refuse_host=None):
        self.config = None
        self.refuse_host = refuse_host
        self.loads = 0

    def __call__(self, method, path, payload=None):
        if method == "POST" and path == "/load":
            self.loads += 1
            routes = payload["apps"]["http"]["servers"]["hakobune"]["routes"]
            for index, route in enumerate(routes):
                hosts = [host for matcher in route.get("match", []) for host in matcher["host"]]
                if self.refuse_host in hosts:
                    return FakeResponse(400, {"error": (
                        "loading config: loading new config: loading http app module: provision http: server "
                        f"hakobune: setting up route handlers: route {index}: loading handler modules: position 0: "
                        "provision http.handlers.reverse_proxy: nope")})
            self.config = payload
            return FakeResponse(200)
        if method == "GET" and path == "/config/":
            return FakeResponse(200, self.config)
        if method == "GET" and path.startswith("/config/apps/http/servers/hakobune"):
            if self.config is None:
                return FakeResponse(200, None)
            server = self.config["apps"]["http"]["servers"]["hakobune"]
            return FakeResponse(200, server["routes"] if path.endswith("/routes") else server)
        if method in ("PUT", "PATCH"):
            self.config["apps"]["http"]["servers"]["hakobune"]["routes"].insert(0, payload)
            return FakeResponse(200)
        raise AssertionError((method, path))


def served_hosts(caddy):
    routes = caddy.config["apps"]["http"]["servers"]["hakobune"]["routes"]
    return {host for route in routes for matcher in route.get("match", []) for host in matcher["host"]}


@pytest.fixture
def router(tmp_path, monkeypatch):
    router = CaddyRouter("http://127.0.0.1:2999", 18080, state_dir=tmp_path / "router")
    caddy = FakeCaddy(refuse_host="odd.acme.localhost")
    monkeypatch.setattr(router, "_request", caddy)
    router.caddy = caddy
    return router


def test_a_route_caddy_refuses_is_left_out_and_the_rest_loaded(router):
    refused = router.load([Route("web.acme.localhost", UP), Route("odd.acme.localhost", UP),
                           Route("api.acme.localhost", UP, aliases=("bad domain",))])
    assert served_hosts(router.caddy) == {"web.acme.localhost"}
    assert "refused its route" in refused["odd.acme.localhost"] and "nope" in refused["odd.acme.localhost"]
    assert "bad domain" in refused["api.acme.localhost"]
    assert router.caddy.loads == 2


def test_the_last_good_config_is_kept_and_restores_a_restarted_caddy(router, tmp_path):
    router.load([Route("web.acme.localhost", UP)])
    kept = json.loads((tmp_path / "router" / "last-good.json").read_text())
    assert kept == router.caddy.config
    router.caddy.config = None  # Caddy restarted, empty
    assert router.restore()
    assert served_hosts(router.caddy) == {"web.acme.localhost"}


def test_a_deploy_to_a_restarted_caddy_brings_the_others_back_first(router):
    router.load([Route("web.acme.localhost", UP), Route("api.acme.localhost", UP)])
    router.caddy.config = None  # Caddy restarted, empty
    router.set_route(Route("new.acme.localhost", ("127.0.0.1:40000",)))
    assert served_hosts(router.caddy) == {"web.acme.localhost", "api.acme.localhost", "new.acme.localhost"}


def test_a_deploy_with_a_bad_route_fails_for_good_and_touches_nothing(router):
    router.load([Route("web.acme.localhost", UP)])
    with pytest.raises(RouterError) as raised:
        router.set_route(Route("shop.acme.localhost", UP, aliases=("not a domain",)))
    assert raised.value.permanent and "not a domain" in str(raised.value)
    assert served_hosts(router.caddy) == {"web.acme.localhost"}


def test_a_config_refused_for_no_routes_sake_keeps_the_running_one(router, monkeypatch):
    router.load([Route("web.acme.localhost", UP)])
    before = router.caddy.config
    monkeypatch.setattr(router, "_request", lambda *args, **kwargs: FakeResponse(400, {"error": "json: bad"}))
    with pytest.raises(RouterError):
        router.load([Route("web.acme.localhost", UP)])
    assert router.last_good() == before


def test_the_sync_reports_a_left_out_route_on_its_service_and_clears_it_after(
    team, owner, dummy_backend, queued_tasks
):
    good = create_service(team=team, name="web", created_by=owner)
    bad = create_service(team=team, name="shop", created_by=owner)
    for service in (good, bad):
        build = service.builds.create(number=1, source_kind="archive", status="live", image="img")
        release = Release.objects.create(service=service, build=build, number=1, image="img", config={},
                                         status=Release.Status.LIVE)
        Service.objects.filter(id=service.id).update(live_release=release)
    dummy_backend.refused_routes = {bad.hostname: "'bad domain!' is not a valid host name"}

    sync_router()

    assert Service.objects.get(id=bad.id).route_problem == "'bad domain!' is not a valid host name"
    assert Service.objects.get(id=good.id).route_problem == ""
    dummy_backend.refused_routes = {}
    sync_router()
    assert Service.objects.get(id=bad.id).route_problem == ""
