"""The router's configuration: every route checked before Caddy sees it, a
bad one left out and reported while the others are loaded in one atomic
load, a route Caddy itself refuses left out too, and the last good config
kept on disk for a restarted Caddy."""

import json

import pytest

from hakobune.platform.services.housekeeping import sync_router
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.services import create_service
from hakobune.runtime import router as router_module
from hakobune.runtime.router import (
    HOSTS_ID, CaddyRouter, Route, RouterError, config_etag, host_problem, refused_mapping_index, route_problems,
    routes_of, screen, upstream_problem,
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


def test_caddys_error_names_the_host_entry_it_refused():
    message = ("loading config: loading new config: loading http app module: provision http: server hakobune: "
               "setting up route handlers: route 0: loading handler modules: position 0: loading module 'map': "
               "http.handlers.map: invalid configuration: mapping 2 has a duplicate input 'a.example' previously "
               "used with mapping 0")
    assert refused_mapping_index(message) == 2
    assert refused_mapping_index("loading config: unknown field \"x\"") is None


class FakeResponse:
    def __init__(self, status, payload=None, *, body=None):
        self.status_code = status
        self.headers = {}  # Caddy 2.6 sends the config's ETag as a trailer, which clients never see
        self.content = body if body is not None else (json.dumps(payload).encode() if payload is not None else b"")
        self.text = self.content.decode()

    def json(self):
        return json.loads(self.text)


class FakeCaddy:
    """Caddy's admin API as the router client uses it: /load and POST /config/
    refuse configs whose host map holds a refused host (naming its entry, as
    Caddy does), and POST /config/ takes an If-Match of the config's ETag (412
    when the config changed since). `before_write` runs between a client's
    read and its write, as another process's change would."""

    def __init__(self, refuse_host=None):
        self.config = None
        self.refuse_host = refuse_host
        self.loads = 0
        self.writes = []
        self.before_write = None

    def body(self):
        return (json.dumps(self.config) + "\n").encode()

    def take(self, payload):
        for route in payload["apps"]["http"]["servers"]["hakobune"]["routes"]:
            if route.get("@id") != HOSTS_ID:
                continue
            for index, mapping in enumerate(route["handle"][0]["mappings"]):
                if mapping["input"] == self.refuse_host:
                    return FakeResponse(400, {"error": (
                        "loading config: loading new config: loading http app module: provision http: server "
                        "hakobune: setting up route handlers: route 0: loading handler modules: position 0: "
                        f"loading module 'map': http.handlers.map: invalid configuration: mapping {index} nope")})
        self.config = payload
        return FakeResponse(200)

    def __call__(self, method, path, payload=None, headers=None):
        if method == "POST" and path == "/load":
            self.loads += 1
            return self.take(payload)
        if method == "POST" and path == "/config/":
            if self.before_write:
                change, self.before_write = self.before_write, None
                change()
            if (headers or {}).get("If-Match") != config_etag(self.body()):
                return FakeResponse(412, {"error": "If-Match header did not match current config hash"})
            self.writes.append(payload)
            return self.take(payload)
        if method == "GET" and path == "/config/":
            return FakeResponse(200, body=self.body())
        if method == "GET" and path.startswith("/config/apps/http/servers/hakobune"):
            if self.config is None:
                return FakeResponse(200, None)
            server = self.config["apps"]["http"]["servers"]["hakobune"]
            return FakeResponse(200, server["routes"] if path.endswith("/routes") else server)
        raise AssertionError((method, path))


def served(caddy) -> list[Route]:
    return routes_of(caddy.config["apps"]["http"]["servers"]["hakobune"]["routes"])


def served_hosts(caddy):
    return {host for route in served(caddy) for host in (route.hostname, *route.aliases, *route.redirects)}


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


# -- the host lookup: one map, whatever the number of services ---------------------------------


def many_routes(count):
    routes = []
    for number in range(count):
        hostname = f"web{number:03d}.acme.localhost"
        if number % 50 == 1:  # a few with two instances, a custom domain and an old address
            routes.append(Route(hostname, (f"127.0.0.1:{30000 + number}", f"127.0.0.1:{40000 + number}"),
                                aliases=(f"www.shop{number}.example",), redirects=(f"web{number:03d}-acme.localhost",)))
        elif number % 50 == 2:  # and a few asleep
            routes.append(Route(hostname, ("127.0.0.1:8000",), asleep=True))
        else:
            routes.append(Route(hostname, (f"127.0.0.1:{30000 + number}",)))
    return routes


def test_the_host_lookup_is_one_map_whatever_the_number_of_services():
    router = CaddyRouter("http://127.0.0.1:2019", 8080)
    small = router.full_config(many_routes(4))["apps"]["http"]["servers"]["hakobune"]["routes"]
    large = router.full_config(many_routes(200))["apps"]["http"]["servers"]["hakobune"]["routes"]
    # Caddy tries routes in turn: their number does not grow with the services.
    assert [route.get("@id") for route in large] == [route.get("@id") for route in small] == [
        "hakobune-hosts", "hakobune-hosts-folded", "hakobune-proxy-1", "hakobune-proxy-2", "hakobune-wake-1",
        "hakobune-redirect", "hakobune-fallback",
    ]
    assert not any("host" in matcher for route in large for matcher in route.get("match", []))
    host_map = large[0]["handle"][0]
    assert host_map["source"] == "{http.request.host}" and len(host_map["mappings"]) == 200 + 4 + 4
    lookup = {mapping["input"]: dict(zip(host_map["destinations"], mapping["outputs"])) for mapping in host_map["mappings"]}
    assert lookup["web199.acme.localhost"] == {
        "{hakobune_kind}": "proxy-1", "{hakobune_service}": "web199.acme.localhost", "{hakobune_location}": "",
        "{hakobune_up_0}": "127.0.0.1:30199", "{hakobune_up_1}": "",
    }
    assert lookup["www.shop51.example"]["{hakobune_up_1}"] == "127.0.0.1:40051"
    assert lookup["web051-acme.localhost"]["{hakobune_kind}"] == "redirect"
    assert lookup["web051-acme.localhost"]["{hakobune_location}"] == "http://web051.acme.localhost:8080"
    # Each fixed route acts on what the lookup named; n instances share the requests in turn.
    proxy_2 = large[3]
    assert proxy_2["match"] == [{"vars": {"hakobune_route": ["proxy-2"]}}]
    assert [upstream["dial"] for upstream in proxy_2["handle"][0]["upstreams"]] == [
        "{hakobune_up_0}{hakobune_ci_up_0}", "{hakobune_up_1}{hakobune_ci_up_1}"]
    assert proxy_2["handle"][0]["load_balancing"] == {"selection_policy": {"policy": "round_robin"}}
    # A host sent with capitals: case-insensitive patterns, consulted only when the exact lookup found nothing.
    folded = large[1]
    assert folded["match"] == [{"vars": {"hakobune_route": [""]}, "header_regexp": {"Host": {"pattern": "[A-Z]"}}}]
    assert folded["handle"][0]["mappings"][0]["input_regexp"] == r"(?i)^web000\.acme\.localhost$"
    assert large[-1]["handle"][0]["status_code"] == 404


def test_no_routes_leave_only_the_404():
    routes = CaddyRouter("http://127.0.0.1:2019", 8080).full_config([])["apps"]["http"]["servers"]["hakobune"]["routes"]
    assert [route["@id"] for route in routes] == ["hakobune-fallback"]


def test_the_routes_read_back_from_caddys_config_are_the_routes_written(router):
    routes = many_routes(60)
    router.load(routes)
    assert served(router.caddy) == routes
    assert router.routes()["www.shop51.example"] == ("127.0.0.1:30051", "127.0.0.1:40051")


def test_a_deploy_while_caddy_runs_the_config_of_one_route_per_service_keeps_every_service(router):
    # What Caddy ran before the host map (and a last-good.json may still hold).
    router.caddy.config = {"apps": {"http": {"servers": {"hakobune": {"routes": [
        {"@id": "hakobune-route-web.acme.localhost", "match": [{"host": ["web.acme.localhost", "www.web.example",
                                                                          "web-acme.localhost"]}],
         "handle": [{"handler": "subroute", "routes": [{"match": [{"host": ["web-acme.localhost"]}]}]},
                    {"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:30001"}, {"dial": "127.0.0.1:30002"}]}],
         "terminal": True},
        {"@id": "hakobune-route-zzz.acme.localhost", "match": [{"host": ["zzz.acme.localhost"]}],
         "handle": [{"handler": "rewrite", "uri": "/_hakobune/wake{http.request.uri}"},
                    {"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:8000"}]}], "terminal": True},
        {"@id": "hakobune-fallback", "handle": [{"handler": "static_response", "status_code": 404}]},
    ]}}}}}
    router.set_route(Route("new.acme.localhost", ("127.0.0.1:40000",)))
    assert served(router.caddy) == [
        Route("web.acme.localhost", ("127.0.0.1:30001", "127.0.0.1:30002"), aliases=("www.web.example",),
              redirects=("web-acme.localhost",)),
        Route("zzz.acme.localhost", ("127.0.0.1:8000",), asleep=True),
        Route("new.acme.localhost", ("127.0.0.1:40000",)),
    ]


def test_two_route_changes_at_once_lose_neither(router, tmp_path, monkeypatch):
    router.load([Route("web.acme.localhost", UP)])
    # Another process (a worker on another host, or one whose state folder is
    # elsewhere: no shared lock to take turns by) shares the same Caddy.
    other = CaddyRouter("http://127.0.0.1:2999", 18080)
    monkeypatch.setattr(other, "_request", router.caddy)
    router.caddy.before_write = lambda: other.set_route(Route("api.acme.localhost", ("127.0.0.1:40001",)))

    router.set_route(Route("shop.acme.localhost", ("127.0.0.1:40002",)))

    # The first write found the config changed (412), read it again and kept the other's route.
    assert served_hosts(router.caddy) == {"web.acme.localhost", "api.acme.localhost", "shop.acme.localhost"}
    assert len(router.caddy.writes) == 2
    assert json.loads((tmp_path / "router" / "last-good.json").read_text()) == router.caddy.config


def test_a_route_that_keeps_meeting_other_changes_fails_to_be_tried_again(router, monkeypatch):
    monkeypatch.setattr(router_module, "CHANGE_PATIENCE", 0.5)
    router.load([Route("web.acme.localhost", UP)])

    def someone_else_writes(*args, **kwargs):
        if args[:2] == ("POST", "/config/"):
            return FakeResponse(412, {"error": "If-Match header did not match current config hash"})
        return FakeCaddy.__call__(router.caddy, *args, **kwargs)

    router._request = someone_else_writes
    with pytest.raises(RouterError) as raised:
        router.set_route(Route("shop.acme.localhost", UP))
    assert not raised.value.permanent and "kept changing" in str(raised.value)
    assert served_hosts(router.caddy) == {"web.acme.localhost"}


def test_a_redeploy_changes_its_own_route_in_place_and_leaves_the_others(router):
    router.load([Route("web.acme.localhost", UP), Route("api.acme.localhost", UP, aliases=("api.example",))])
    router.set_route(Route("web.acme.localhost", ("127.0.0.1:40000", "127.0.0.1:40001")))
    assert served(router.caddy) == [Route("web.acme.localhost", ("127.0.0.1:40000", "127.0.0.1:40001")),
                                    Route("api.acme.localhost", UP, aliases=("api.example",))]


def test_a_custom_domain_moved_to_another_service_leaves_the_first_its_own_address(router):
    router.load([Route("web.acme.localhost", UP, aliases=("shop.example",))])
    router.set_route(Route("api.acme.localhost", ("127.0.0.1:40000",), aliases=("shop.example",)))
    assert served(router.caddy) == [Route("web.acme.localhost", UP),
                                    Route("api.acme.localhost", ("127.0.0.1:40000",), aliases=("shop.example",))]


def test_removing_a_route_removes_its_hosts_only(router):
    router.load([Route("web.acme.localhost", UP, aliases=("shop.example",), redirects=("web-acme.localhost",)),
                 Route("api.acme.localhost", UP)])
    router.remove_route("web.acme.localhost")
    assert served_hosts(router.caddy) == {"api.acme.localhost"}
    writes = len(router.caddy.writes)
    router.remove_route("gone.acme.localhost")  # nothing to remove: nothing written
    assert len(router.caddy.writes) == writes


def test_a_route_caddy_refuses_on_a_deploy_fails_that_deploy_for_good(router):
    router.load([Route("web.acme.localhost", UP)])
    with pytest.raises(RouterError) as raised:
        router.set_route(Route("odd.acme.localhost", UP))
    assert raised.value.permanent and "nope" in str(raised.value)
    assert served_hosts(router.caddy) == {"web.acme.localhost"}


def test_the_etag_is_caddys():
    # GET /config/ of a Caddy 2.6 holding only its admin address, and the ETag it sent.
    assert config_etag(b'{"admin":{"listen":"127.0.0.1:19110"}}\n') == '"/config/ 145bc20a"'
