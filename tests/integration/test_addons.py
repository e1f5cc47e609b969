"""A team's PostgreSQL and Redis add-ons on the real Docker Engine: the owner
creates them, a worker starts them on the team's network, and the team's
service (tests/fixtures/apps/addon-client) keeps a row and a key in them
through DATABASE_URL and REDIS_URL. The data outlives a redeploy of the
service and a restart of the add-on; a container on another team's network
cannot reach them, the router has no route to them, and no port is published.

Traffic goes only to what the tests made: the service through the router and
the add-ons' own addresses inside the team bridges Docker made for the test."""

import json
import secrets
import time
from dataclasses import dataclass

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model

from hakobune.platform.accounts.services import create_team
from hakobune.platform.addons.actions import attach, create_addon
from hakobune.platform.addons.models import AddOn
from hakobune.platform.crypto import decrypt
from hakobune.platform.observability.models import Event
from hakobune.platform.services import housekeeping
from hakobune.platform.services.backends import get_backend
from hakobune.platform.services.models import Release
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.runtime.addons import LocalAddOns, container_name, volume_name
from hakobune.runtime.docker_local import team_network_name
from hakobune.runtime.firewall import Firewall, bridge_of
from tests.conftest import upload_of
from tests.support.infrastructure import get_through_router, remove_team_containers, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@dataclass
class Place:
    teams: dict  # "home"/"other" -> team name
    hostname: str  # the service's
    addons: dict  # name -> AddOn
    owner: object
    passwords: dict  # add-on name -> its password


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"{what} after {timeout} s")


def wait_until_live(service, release, timeout=300):
    def live():
        release.refresh_from_db()
        assert release.status != Release.Status.FAILED, release.failure_reason
        return release.status == Release.Status.LIVE

    wait_for(live, timeout, f"release {release.number} of {service.name} is not live")


def latest_release(service):
    return Release.objects.filter(service=service).order_by("-number").first()


@pytest.fixture(scope="module")
def place(django_db_blocker, worker, router, docker_client):
    teams = {"home": f"add{secrets.token_hex(3)}", "other": f"add{secrets.token_hex(3)}"}
    username = f"addons-{teams['home']}"
    try:
        with django_db_blocker.unblock():
            owner = get_user_model().objects.create_user(username=username, password="x")
            made = {key: create_team(name=name, owner=owner) for key, name in teams.items()}
            service = create_service(team=made["home"], name="web", created_by=owner)
            build = deploy_service(service=service, source_file=upload_of("addon-client"), created_by=owner)
            addons = {
                "db": create_addon(team=made["home"], kind="postgres", name="db", created_by=owner),
                "cache": create_addon(team=made["home"], kind="redis", name="cache", created_by=owner),
            }
            for addon in addons.values():
                wait_for(lambda: AddOn.objects.get(id=addon.id).status != AddOn.Status.PROVISIONING, 600,
                         f"{addon.name} is still provisioning")
                addon.refresh_from_db()
                assert addon.status == AddOn.Status.READY, addon.status_detail
            build = wait_for_build(build, timeout=900)
            log = "\n".join(build.log_lines.values_list("text", flat=True))
            assert build.status == "live", f"{build.failure_reason}\n{log[-3000:]}"
            service.refresh_from_db()
            for addon in addons.values():
                wait_until_live(service, attach(addon=addon, service=service, created_by=owner))
            # The other team's network, made and isolated by the runtime as its first deploy would.
            get_backend("local")._ensure_team_network(teams["other"])
            yield Place(teams=teams, hostname=service.hostname, addons=addons, owner=owner,
                        passwords={name: decrypt(addon.password_encrypted) for name, addon in addons.items()})
    finally:
        runtime = LocalAddOns(get_backend("local"))
        firewall = Firewall()
        for name in teams.values():
            remove_team_containers(docker_client, name)
            for addon in ("db", "cache"):
                runtime.remove(name, addon, delete_volume=True)
            for network in docker_client.networks.list(names=[team_network_name(name)]):
                bridge = bridge_of(network)
                network.remove()
                firewall.remove(bridge)
        with django_db_blocker.unblock():
            get_user_model().objects.filter(username=username).delete()


def store(place, path, value):
    session = requests.Session()
    session.trust_env = False
    response = session.put(f"http://127.0.0.1:{settings.ROUTER_PORT}{path}", data=value,
                           headers={"Host": f"{place.hostname}:{settings.ROUTER_PORT}"}, timeout=30)
    assert response.status_code == 200, response.text[:1000]


def read(place, path):
    response = get_through_router(place.hostname, path, timeout=30)
    assert response.status_code == 200, response.text[:1000]
    return response.json()["value"]


def addon_address(docker_client, place, name):
    container = docker_client.containers.get(container_name(place.teams["home"], name))
    return container.attrs["NetworkSettings"]["Networks"][team_network_name(place.teams["home"])]["IPAddress"]


def read_again(place, path, timeout=90):
    """What `read` gives once the add-on answers again after it came back."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = get_through_router(place.hostname, path, timeout=30)
            if response.status_code == 200:
                return response.json()["value"]
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not answer again within {timeout} s")
        time.sleep(0.5)


# The first test: the platform's database is emptied after each test, and only
# this one needs it (the others look at containers, networks and the router).
def test_the_service_keeps_a_row_and_a_key_through_a_redeploy_a_restart_and_the_loss_of_the_add_ons_containers(
    place, docker_client
):
    assert get_through_router(place.hostname, "/env", timeout=30).json() == {"DATABASE_URL": True, "REDIS_URL": True}
    store(place, "/pg/greeting", "hello from postgres")
    store(place, "/redis/greeting", "hello from redis")
    assert read(place, "/pg/greeting") == "hello from postgres"
    assert read(place, "/redis/greeting") == "hello from redis"

    service = place.addons["db"].services.get()
    build = wait_for_build(deploy_service(service=service, source_file=upload_of("addon-client"), created_by=place.owner),
                           timeout=900)
    assert build.status == "live", build.failure_reason
    runtime = LocalAddOns(get_backend("local"))
    for addon in place.addons.values():
        runtime.restart(place.teams["home"], addon.name, addon.kind, place.passwords[addon.name])
    assert read(place, "/pg/greeting") == "hello from postgres"
    assert read(place, "/redis/greeting") == "hello from redis"
    volumes = {mount["Name"] for name in ("db", "cache")
               for mount in docker_client.containers.get(container_name(place.teams["home"], name)).attrs["Mounts"]}
    assert volumes == {volume_name(place.teams["home"], "db"), volume_name(place.teams["home"], "cache")}

    # Killed (the engine's restart policy leaves a killed container alone): one
    # pass of the reconciler starts both again.
    home = place.teams["home"]
    for name in ("db", "cache"):
        container = docker_client.containers.get(container_name(home, name))
        container.kill()
        container.wait(timeout=30)
    assert {docker_client.containers.get(container_name(home, name)).status for name in ("db", "cache")} == {"exited"}
    housekeeping.reconcile()
    assert {docker_client.containers.get(container_name(home, name)).status for name in ("db", "cache")} == {"running"}
    assert read_again(place, "/pg/greeting") == "hello from postgres"
    assert read_again(place, "/redis/greeting") == "hello from redis"

    # Removed by hand: the next pass makes it again, on the same volume, with the same name and password.
    before = docker_client.containers.get(container_name(home, "db")).id
    docker_client.containers.get(container_name(home, "db")).remove(force=True)
    housekeeping.reconcile()
    again = docker_client.containers.get(container_name(home, "db"))
    assert again.id != before and again.status == "running"
    assert AddOn.objects.get(id=place.addons["db"].id).container_id == again.id
    assert read_again(place, "/pg/greeting") == "hello from postgres"
    # The team's audit log says what Hakobune did, and a pass that finds all running does nothing.
    repairs = Event.objects.filter(kind="addon.repaired", team__name=home).order_by("id")
    assert [(event.params["addon"], event.params["how"]) for event in repairs] == [
        ("cache", "started"), ("db", "started"), ("db", "recreated")]
    housekeeping.reconcile()
    assert Event.objects.filter(kind="addon.repaired", team__name=home).count() == 3


def test_the_add_ons_run_confined_as_their_own_user_with_no_published_port(place, docker_client):
    for name, user in (("db", "postgres"), ("cache", "redis")):
        container = docker_client.containers.get(container_name(place.teams["home"], name))
        host = container.attrs["HostConfig"]
        assert container.attrs["Config"]["User"] == user
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert "no-new-privileges" in host["SecurityOpt"] and host["ReadonlyRootfs"] is True
        assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["CpuQuota"] > 0
        assert not host["PortBindings"] and not container.attrs["NetworkSettings"]["Ports"]
        assert list(container.attrs["NetworkSettings"]["Networks"]) == [team_network_name(place.teams["home"])]
        status = container.exec_run(["sh", "-c", "grep ^CapEff /proc/1/status"]).output.decode()
        assert status.split()[-1] == "0000000000000000"


def run_on_network(docker_client, team, command):
    """A short-lived container on `team`'s network (confined as instances
    are), running `command`: its exit status and output."""
    container = docker_client.containers.run(
        "hakobune/stack-redis:bookworm" if "redis" in command[0] else "hakobune/stack-postgres:bookworm",
        command, detach=True, network=team_network_name(team), user="nobody", cap_drop=["ALL"],
        security_opt=["no-new-privileges"], labels={"org.hakobune.team": team},
    )
    try:
        result = container.wait(timeout=60)
        return result["StatusCode"], container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def test_another_teams_container_cannot_connect_but_a_teammate_can(place, docker_client):
    other = place.teams["other"]
    password = place.passwords["cache"]
    redis_ip, postgres_ip = addon_address(docker_client, place, "cache"), addon_address(docker_client, place, "db")
    ping = ["redis-cli", "-h", redis_ip, "-p", "6379", "-a", password, "--no-auth-warning", "ping"]
    ready = ["pg_isready", "-h", postgres_ip, "-p", "5432", "-t", "5"]

    code, output = run_on_network(docker_client, place.teams["home"], ping)
    assert code == 0 and "PONG" in output, output
    code, output = run_on_network(docker_client, place.teams["home"], ready)
    assert code == 0, output

    code, output = run_on_network(docker_client, other, ["timeout", "8", *ping])
    assert "PONG" not in output, output
    code, output = run_on_network(docker_client, other, ready)
    assert code != 0 and "accepting connections" not in output, output
    # Nor by name: the add-on's alias exists on its own team's network only.
    code, output = run_on_network(docker_client, other, ["pg_isready", "-h", "db", "-p", "5432", "-t", "3"])
    assert code != 0, output


def test_the_router_has_no_route_to_the_add_ons(place, docker_client):
    session = requests.Session()
    session.trust_env = False
    config = json.dumps(session.get(f"{settings.ROUTER_ADMIN_URL}/config/", timeout=10).json())
    assert place.hostname in config
    for name, port in (("db", 5432), ("cache", 6379)):
        assert f"{addon_address(docker_client, place, name)}:{port}" not in config
        assert container_name(place.teams["home"], name) not in config
