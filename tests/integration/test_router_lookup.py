"""The router's host lookup through the real Caddy: one map from every routed
host to its service's upstreams, however many services there are. Each
service's requests reach its own instances and no one else's, shared in turn
among them; a custom domain reaches its service, an old address redirects, a
sleeping service's requests go to the waker with the router's secret; a host
no service has gets the platform's 404; and deploys changing routes at the
same moment lose none of them. A Caddy of the test's own, on free ports, with
upstreams that answer with their own port."""

import concurrent.futures
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from hakobune.runtime.router import NOT_FOUND_BODY, WAKE_HOST_HEADER, WAKER_HEADER, CaddyRouter, Route
from tests.support.echo import EchoUpstreams
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

SERVICES = 200


@pytest.fixture
def caddy():
    """(admin URL, listen port) of a Caddy of this test's own."""
    admin_port, port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="hakobune-router-lookup-") as home:
        boot = Path(home) / "boot.json"
        boot.write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{admin_port}"}}))
        process = subprocess.Popen(
            ["caddy", "run", "--config", str(boot)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home},
        )
        admin = f"http://127.0.0.1:{admin_port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                if client().get(f"{admin}/config/", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "caddy did not start"
            time.sleep(0.1)
        try:
            yield admin, port
        finally:
            process.terminate()
            process.wait(timeout=10)


def client() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def ask(port: int, host: str, path: str = "/", headers: dict | None = None) -> requests.Response:
    return client().get(f"http://127.0.0.1:{port}{path}", headers={"Host": host, **(headers or {})},
                        timeout=10, allow_redirects=False)


def test_each_of_200_services_gets_its_own_requests_and_an_unknown_host_the_404(caddy):
    admin, port = caddy
    router = CaddyRouter(admin, port)
    with EchoUpstreams(SERVICES + 2) as upstreams:
        routes = [Route(f"web{number:03d}-acme.localhost", (upstreams.address(number),)) for number in range(SERVICES)]
        # One of them with two instances, a custom domain and an old address.
        routes[123] = Route("web123-acme.localhost", (upstreams.address(123), upstreams.address(SERVICES)),
                            aliases=("www.shop.example",), redirects=("shop-acme.localhost",))
        assert router.load(routes) == {}

        for number in range(SERVICES):  # every service, the first of the map as the last
            answer = ask(port, f"web{number:03d}-acme.localhost:{port}", f"/page/{number}?q=1")
            assert answer.status_code == 200, (number, answer.text)
            assert answer.json()["port"] in {upstreams.ports[number]} | (
                {upstreams.ports[SERVICES]} if number == 123 else set()), number
            assert answer.json()["path"] == f"/page/{number}?q=1"
            assert answer.json()["headers"]["Host"] == f"web{number:03d}-acme.localhost:{port}"

        # The two instances share the service's requests in turn; no other service sees one.
        seen = [ask(port, "web123-acme.localhost").json()["port"] for _ in range(6)]
        assert set(seen) == {upstreams.ports[123], upstreams.ports[SERVICES]}
        assert ask(port, "www.shop.example").json()["port"] in {upstreams.ports[123], upstreams.ports[SERVICES]}
        moved = ask(port, f"shop-acme.localhost:{port}", "/a/b?c=d")
        assert moved.status_code == 308
        assert moved.headers["Location"] == f"http://web123-acme.localhost:{port}/a/b?c=d"

        # A host sent with capitals still reaches its service.
        assert ask(port, "WEB042-Acme.localhost").json()["port"] == upstreams.ports[42]
        # A host no service has, or one that only looks like one: the platform's 404.
        for stranger in ("nobody-acme.localhost", "web042-acme.localhost.evil.example", "eb042-acme.localhost",
                         "WEB999-ACME.localhost", "127.0.0.1"):
            answer = ask(port, stranger)
            assert answer.status_code == 404 and answer.text == NOT_FOUND_BODY, stranger

        # A service removed: its host is unknown, the others answer as before.
        router.remove_route("web042-acme.localhost")
        assert ask(port, "web042-acme.localhost").status_code == 404
        assert ask(port, "web043-acme.localhost").json()["port"] == upstreams.ports[43]


def test_a_sleeping_services_requests_go_to_the_waker_and_no_service_sees_the_secret(caddy):
    admin, port = caddy
    router = CaddyRouter(admin, port, waker_secret="the-routers-secret")
    with EchoUpstreams(2) as upstreams:
        waker, app = upstreams.address(0), upstreams.address(1)
        router.load([Route("sleepy-acme.localhost", (waker,), asleep=True, aliases=("www.sleepy.example",)),
                     Route("awake-acme.localhost", (app,))])
        forged = {WAKER_HEADER: "forged", WAKE_HOST_HEADER: "other-acme.localhost"}

        woken = ask(port, f"www.sleepy.example:{port}", "/some/page?x=1", headers=forged).json()
        assert woken["port"] == upstreams.ports[0] and woken["path"] == "/_hakobune/wake/some/page?x=1"
        assert woken["headers"][WAKER_HEADER] == "the-routers-secret"
        assert woken["headers"][WAKE_HOST_HEADER] == f"www.sleepy.example:{port}"
        assert woken["headers"]["Host"] == "127.0.0.1"

        served = ask(port, "awake-acme.localhost", headers=forged).json()
        assert served["port"] == upstreams.ports[1]
        assert WAKER_HEADER not in served["headers"] and WAKE_HOST_HEADER not in served["headers"]

        # Woken: the route points at the instance, and the secret is gone from its way.
        router.set_route(Route("sleepy-acme.localhost", (app,), aliases=("www.sleepy.example",)))
        served = ask(port, "www.sleepy.example", headers=forged).json()
        assert served["port"] == upstreams.ports[1] and WAKER_HEADER not in served["headers"]


def test_deploys_changing_routes_at_the_same_moment_lose_none(caddy):
    admin, port = caddy
    with EchoUpstreams(24) as upstreams:
        CaddyRouter(admin, port).load([Route("first-acme.localhost", (upstreams.address(0),))])

        def deploy(number):
            # Each deploy its own client, as separate worker processes have.
            CaddyRouter(admin, port).set_route(Route(f"web{number:02d}-acme.localhost", (upstreams.address(number),)))

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(deploy, range(1, 24)))

        routes = CaddyRouter(admin, port).routes()
        assert set(routes) == {"first-acme.localhost", *(f"web{number:02d}-acme.localhost" for number in range(1, 24))}
        for number in range(1, 24):
            assert ask(port, f"web{number:02d}-acme.localhost").json()["port"] == upstreams.ports[number]
