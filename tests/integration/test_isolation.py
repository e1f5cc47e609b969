"""What a service can do from inside its container, asked of a deployed probe
(tests/fixtures/apps/probe): no capabilities, a read-only root, no Docker
socket, a pids limit that stops a fork bomb, a memory limit that ends a hog
without harming its neighbours, and no way to the host or to another team.

Three services are deployed once for the module through the real pipeline:
the probe and a neighbour (flask-hello) in one team, and flask-hello in a
second team. Traffic only ever goes to what the tests made: the team bridge's
gateway (the host side of a bridge Docker made for the test) and the test
containers. The metadata block is read from iptables, never tried."""

import http.client
import ipaddress
import secrets
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.backends import get_backend
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.runtime.base import LiveRoute, ServiceRef
from hakobune.runtime.docker_local import LABEL_RELEASE, LABEL_SERVICE, LABEL_TEAM, team_network_name
from hakobune.runtime.firewall import (
    FORWARD_CHAIN,
    INPUT_CHAIN,
    PRIVATE_CHAIN,
    PRIVATE_RANGES,
    TEAM_IN_CHAIN,
    TEAM_OUT_CHAIN,
    Firewall,
    bridge_of,
    host_resolvers,
)
from tests.conftest import upload_of

from tests.support.infrastructure import get_through_router, remove_team_containers, wait_for_build
from tests.support.listeners import host_listener as listening_on

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HOST_SERVICES = {"redis": 6379, "postgresql": 5432, "portal": 8000, "caddy admin": 2019}


@dataclass
class Deployed:
    hostname: str
    team: str
    service: str
    container_id: str
    ip: str  # on its team's bridge
    port: int
    memory_mb: int


@dataclass
class Place:
    services: dict  # name -> Deployed
    gateway: str  # the probe's team bridge, host side
    bridges: dict  # team -> bridge interface
    networks: dict  # team -> docker network
    teams: dict  # "home"/"other" -> team name


@pytest.fixture(scope="module")
def place(django_db_blocker, worker, router, docker_client):
    teams = {"home": f"iso{secrets.token_hex(3)}", "other": f"iso{secrets.token_hex(3)}"}
    wanted = [("home", "probe", "probe"), ("home", "neighbour", "flask-hello"), ("other", "other", "flask-hello")]
    username = f"isolation-{teams['home']}"
    services = {}
    try:
        with django_db_blocker.unblock():
            owner = get_user_model().objects.create_user(username=username, password="x")
            made = {key: create_team(name=name, owner=owner) for key, name in teams.items()}
            builds = {}
            for team_key, name, app in wanted:
                service = create_service(team=made[team_key], name=name, created_by=owner)
                builds[name] = deploy_service(service=service, source_file=upload_of(app), created_by=owner)
            for name, build in builds.items():
                build = wait_for_build(build, timeout=900)
                log = "\n".join(build.log_lines.values_list("text", flat=True))
                assert build.status == "live", f"{name}: {build.failure_reason}\n{log[-3000:]}"
                service = build.service
                network = team_network_name(service.team.name)
                container = docker_client.containers.list(
                    filters={"label": [f"{LABEL_TEAM}={service.team.name}", f"{LABEL_SERVICE}={name}"]}
                )[0]
                services[name] = Deployed(
                    hostname=service.hostname,
                    team=service.team.name,
                    service=name,
                    container_id=container.id,
                    ip=container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"],
                    port=service.port,
                    memory_mb=service.memory_mb,
                )
        networks = {key: docker_client.networks.get(team_network_name(name)) for key, name in teams.items()}
        yield Place(
            services=services,
            gateway=networks["home"].attrs["IPAM"]["Config"][0]["Gateway"],
            bridges={key: bridge_of(network) for key, network in networks.items()},
            networks=networks,
            teams=teams,
        )
    finally:
        firewall = Firewall()
        for name in teams.values():
            remove_team_containers(docker_client, name)
            for network in docker_client.networks.list(names=[team_network_name(name)]):
                bridge = bridge_of(network)
                network.remove()
                firewall.remove(bridge)
        with django_db_blocker.unblock():
            get_user_model().objects.filter(username=username).delete()


def ask(place, path, timeout=30):
    """The probe's answer, through the router as any visitor would reach it."""
    response = get_through_router(place.services["probe"].hostname, path, timeout=timeout)
    assert response.status_code == 200, response.text[:1000]
    return response.json()


def test_the_service_has_no_capabilities_a_read_only_root_and_no_docker_socket(place):
    inside = ask(place, "/inside")
    assert inside["uid"] == 10001 and inside["gid"] == 10001
    assert int(inside["cap_eff"], 16) == 0
    assert int(inside["cap_prm"], 16) == 0 and int(inside["cap_bnd"], 16) == 0
    assert inside["no_new_privs"] == "1"
    assert inside["root"] == {"writable": False, "error": "EROFS"}
    assert inside["usr"]["writable"] is False and inside["app"]["writable"] is False
    assert inside["tmp"] == {"writable": True}  # the tmpfs, the one place to write
    assert inside["docker_socket"] == {"/var/run/docker.sock": False, "/run/docker.sock": False}


def test_a_fork_bomb_stops_at_the_pids_limit_and_the_service_survives(place, docker_client):
    container = docker_client.containers.get(place.services["probe"].container_id)
    limit = container.attrs["HostConfig"]["PidsLimit"]
    started_at = container.attrs["State"]["StartedAt"]
    assert 0 < limit <= 1024

    report = ask(place, "/forkbomb?seconds=30", timeout=120)
    assert report.get("eagain", 0) > 0, report  # fork() failed with EAGAIN: the limit held
    assert report["pids_max"] == str(limit)
    assert limit - 5 <= report["pids_peak"] <= limit, report
    assert report["cleaned_up"] is True and int(report["pids_after"]) < 20

    # Still the same instance, and it still answers.
    container.reload()
    assert container.status == "running" and container.attrs["State"]["StartedAt"] == started_at
    assert container.attrs["RestartCount"] == 0
    assert get_through_router(place.services["probe"].hostname).text == "probe ok\n"


@pytest.fixture
def host_listener(place):
    """A TCP listener of the test's own on the host, on the probe's bridge
    gateway address: what a host service listening on 0.0.0.0 looks like to a
    container. The host itself can connect to it."""
    with listening_on(place.gateway) as (port, accepted):
        yield port, accepted


def test_the_service_cannot_reach_the_hosts_services(place, host_listener):
    port, accepted = host_listener
    with socket.create_connection((place.gateway, port), timeout=2):
        pass  # the host reaches its own listener on the gateway address
    deadline = time.monotonic() + 2
    while not accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert accepted, "the control connection from the host was not accepted"
    assert ask(place, "/inside")["gateway"] == place.gateway
    accepted.clear()

    targets = {f"{place.gateway}:{p}": what for what, p in HOST_SERVICES.items()}
    targets[f"{place.gateway}:{port}"] = "a listener on the gateway"
    query = "&".join(f"to={target}" for target in targets) + "&timeout=1.5"
    outcomes = ask(place, f"/connect?{query}")

    # Dropped, not refused: the packets never reach the host's sockets.
    assert outcomes == {target: "timeout" for target in targets}, outcomes
    assert accepted == []
    # The host's 127.0.0.1 is not the container's: there, nothing listens.
    assert ask(place, "/connect?to=127.0.0.1:6379&to=127.0.0.1:5432&timeout=1") == {
        "127.0.0.1:6379": "refused", "127.0.0.1:5432": "refused"
    }


def test_the_service_reaches_its_own_team_but_not_another_teams_containers(place):
    other, neighbour = place.services["other"], place.services["neighbour"]
    # Both listen: the host reaches each on its bridge.
    for target in (other, neighbour):
        with socket.create_connection((target.ip, target.port), timeout=2):
            pass

    outcomes = ask(place, f"/connect?to={other.ip}:{other.port}&to={neighbour.ip}:{neighbour.port}&timeout=1.5")
    assert outcomes == {f"{other.ip}:{other.port}": "timeout", f"{neighbour.ip}:{neighbour.port}": "connected"}


def test_the_firewall_rules_isolate_each_team_bridge_and_drop_the_metadata_address(place):
    """Read, never tried: no packet is sent to 169.254.169.254."""

    def rules(chain):
        return subprocess.run(["iptables", "-w", "5", "-S", chain], capture_output=True, text=True, check=True).stdout

    assert f"-A DOCKER-USER -j {FORWARD_CHAIN}" in rules("DOCKER-USER").splitlines()
    assert rules("INPUT").splitlines()[1] == f"-A INPUT -j {INPUT_CHAIN}"  # first, before the host's own rules
    forward, inbound = rules(FORWARD_CHAIN), rules(INPUT_CHAIN)
    for bridge in place.bridges.values():
        tag = f'-m comment --comment "hakobune:{bridge}"'
        ours = [line for line in forward.splitlines() if f"hakobune:{bridge}" in line]
        assert ours == [f"-A {FORWARD_CHAIN} -i {bridge} -o {bridge} {tag} -j RETURN",
                        f"-A {FORWARD_CHAIN} -i {bridge} {tag} -j {TEAM_OUT_CHAIN}"]
        assert f"-A {INPUT_CHAIN} -i {bridge} {tag} -j {TEAM_IN_CHAIN}" in inbound
    assert rules(TEAM_IN_CHAIN).splitlines()[1:] == [
        f"-A {TEAM_IN_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN", f"-A {TEAM_IN_CHAIN} -j DROP"]

    # The metadata address and other bridges first; private ranges are
    # dropped after the host's resolvers are let through (Docker's DNS inside
    # the container asks them); read, never tried.
    out = rules(TEAM_OUT_CHAIN).splitlines()[1:]
    assert out[:3] == [f"-A {TEAM_OUT_CHAIN} -d 169.254.0.0/16 -j DROP", f"-A {TEAM_OUT_CHAIN} -o br-+ -j DROP",
                       f"-A {TEAM_OUT_CHAIN} -o docker0 -j DROP"]
    for resolver in host_resolvers():
        assert f"-A {TEAM_OUT_CHAIN} -d {resolver}/32 -p udp -m udp --dport 53 -j RETURN" in out
    assert out[-len(PRIVATE_RANGES):] == [f"-A {TEAM_OUT_CHAIN} -d {network} -j {PRIVATE_CHAIN}"
                                          for network in PRIVATE_RANGES]
    assert rules(PRIVATE_CHAIN).splitlines()[-1] == f"-A {PRIVATE_CHAIN} -j DROP"
    # No IPv6 on team networks, so there is no path that iptables does not see.
    for network in place.networks.values():
        assert network.attrs["EnableIPv6"] is False
    # Each team's network is its own block of TEAM_SUBNET_POOL, sized between the two bounds.
    pool = ipaddress.ip_network(settings.TEAM_SUBNET_POOL)
    subnets = [ipaddress.ip_network(network.attrs["IPAM"]["Config"][0]["Subnet"]) for network in place.networks.values()]
    assert all(subnet.subnet_of(pool) and settings.TEAM_SUBNET_LARGEST_PREFIX <= subnet.prefixlen
               <= settings.TEAM_SUBNET_PREFIX for subnet in subnets)
    assert len(set(subnets)) == len(subnets)

    # Applying again (as every deploy and the reconciler do) adds nothing. Only
    # this test's bridges are compared: other runs on the host add theirs meanwhile.
    def of_this_test(text):
        return [line for line in text.splitlines() if any(f"hakobune:{b}\"" in line for b in place.bridges.values())]

    assert Firewall().apply(place.bridges["home"]) is False
    assert of_this_test(rules(FORWARD_CHAIN)) == of_this_test(forward)
    assert of_this_test(rules(INPUT_CHAIN)) == of_this_test(inbound)


@pytest.fixture
def private_network():
    """A "company network" of the test's own: a network namespace holding
    10.231.7.2 behind a veth pair from the host (10.231.7.1), with a TCP
    listener in it. Nothing outside this host is ever addressed."""
    namespace = f"hkb{secrets.token_hex(3)}"
    host_end, ns_end = f"{namespace}h", f"{namespace}n"

    def ip(*args, check=True):
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)

    ip("netns", "add", namespace)
    listener = None
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        ip("link", "set", ns_end, "netns", namespace)
        ip("addr", "add", "10.231.7.1/30", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("-n", namespace, "addr", "add", "10.231.7.2/30", "dev", ns_end)
        ip("-n", namespace, "link", "set", ns_end, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        listener = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "python3", "-c",
             "import socket\ns = socket.create_server(('10.231.7.2', 15432))\n"
             "while True:\n    c, _ = s.accept(); c.close()"],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("10.231.7.2", 15432), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield "10.231.7.0/30", "10.231.7.2:15432"
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(timeout=5)
        ip("link", "del", host_end, check=False)
        ip("netns", "del", namespace, check=False)


def test_a_private_network_is_out_of_reach_until_an_administrator_allows_it(place, private_network):
    """The reconciler's call with the teams' allow-lists (from their
    policies: tests/unit/test_governance.py) opens exactly that network, for
    exactly that team, and closes it again when it is taken off the list."""
    allowed, target = private_network
    assert ask(place, f"/connect?to={target}&timeout=1.5") == {target: "timeout"}  # 10/8 is dropped

    backend = get_backend("local")
    try:
        backend.repair_platform({place.teams["home"]: (allowed,)})
        assert ask(place, f"/connect?to={target}&timeout=1.5") == {target: "connected"}
        opened = Firewall().rules(PRIVATE_CHAIN)
        assert any(allowed in line and f"hakobune:{place.bridges['home']}" in line for line in opened)
        assert not any(f"hakobune:{place.bridges['other']}" in line for line in opened)
    finally:
        backend.repair_platform({})
    assert ask(place, f"/connect?to={target}&timeout=1.5") == {target: "timeout"}


def test_a_memory_hog_is_oom_killed_and_reported_while_the_neighbour_keeps_serving(place, docker_client):
    """Last in the module: it takes the probe down (its restart policy brings it back)."""
    probe, neighbour = place.services["probe"], place.services["neighbour"]
    container = docker_client.containers.get(probe.container_id)
    assert container.attrs["HostConfig"]["Memory"] == probe.memory_mb * 1024 * 1024
    since = int(time.time()) - 1

    failures = []
    stop = threading.Event()

    def keep_asking():
        while not stop.is_set():
            try:
                response = get_through_router(neighbour.hostname, timeout=5)
                if response.status_code != 200 or not response.text.startswith("Hello from Hakobune!"):
                    failures.append(response.status_code)
            except Exception as exc:  # noqa: BLE001 - any failure of the neighbour counts
                failures.append(repr(exc))
            time.sleep(0.05)

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    try:
        host, port = "127.0.0.1", int(container.ports[f"{probe.port}/tcp"][0]["HostPort"])
        connection = http.client.HTTPConnection(host, port, timeout=60)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            connection.request("POST", f"/hog?mb={probe.memory_mb * 4}")
            connection.getresponse()  # never answered: the process is killed
        connection.close()

        # Docker saw the OOM kill; the instance restarts by its policy.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            container.reload()
            if container.attrs["State"]["OOMKilled"] and container.attrs["RestartCount"] >= 1:
                break
            time.sleep(0.2)
        state = container.attrs["State"]
        assert state["OOMKilled"] is True and container.attrs["RestartCount"] >= 1, state
        events = docker_client.events(
            since=since, until=int(time.time()) + 1, decode=True,
            filters={"container": container.id, "event": "oom"},
        )
        assert [event["Action"] for event in events] == ["oom"]

        # The backend reports the instance (running again, or restarting).
        backend = get_backend("local")
        status = backend.status(ServiceRef(team=probe.team, service=probe.service))
        assert status.state in ("running", "crashed"), status
        # Docker restarts it on a new ephemeral host port, so the router's
        # route is stale until routes are synced (as the reconciler does).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            container.reload()
            if container.status == "running" and container.ports.get(f"{probe.port}/tcp"):
                break
            time.sleep(0.2)
        live = [
            LiveRoute(hostname=s.hostname, team=s.team, service=s.service,
                      release_id=int(docker_client.containers.get(s.container_id).labels[LABEL_RELEASE]))
            for s in place.services.values()
        ]
        backend.sync_routes(live)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if get_through_router(probe.hostname, timeout=2).text == "probe ok\n":
                    break
            except Exception:  # noqa: BLE001 - still restarting
                pass
            time.sleep(0.2)
        assert get_through_router(probe.hostname).text == "probe ok\n"
    finally:
        stop.set()
        asker.join(timeout=10)
    assert failures == []
