"""A team whose quota outgrew its network block, moved to a larger one on the
real Docker Engine: the owner's team was given a /28 (13 containers) when
blocks were that size at most, runs a service (tests/fixtures/apps/addon-client)
with a Redis add-on, and keeps a key in it. Staff raise the quota to 2 CPU
(20 instances, 40 addresses) and move the team: afterwards the service answers
through the router again from an address in the new /26, the add-on still
holds the key (its volume untouched), and the old network is gone with its
firewall rules.

Traffic goes only to the service through the tests' router."""

import ipaddress

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model

from hakobune.platform.accounts import networks
from hakobune.platform.accounts.services import create_team
from hakobune.platform.addons.actions import attach, create_addon
from hakobune.platform.addons.models import AddOn
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.observability.models import Event
from hakobune.platform.services.backends import get_backend
from hakobune.platform.services.models import Release
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.platform.services.team_networks import grow
from hakobune.runtime.addons import LocalAddOns, container_name
from hakobune.runtime.docker_local import LABEL_TEAM, team_network_name
from hakobune.runtime.firewall import Firewall, bridge_of
from tests.conftest import upload_of
from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _wait(check, timeout, what):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} after {timeout} s")


def _put(hostname, path, value):
    session = requests.Session()
    session.trust_env = False
    answer = session.put(f"http://127.0.0.1:{django_settings.ROUTER_PORT}{path}", data=value,
                         headers={"Host": f"{hostname}:{django_settings.ROUTER_PORT}"}, timeout=30)
    assert answer.status_code == 200, answer.text[:1000]


def test_a_team_moved_to_a_larger_block_answers_again_from_it_with_its_data(
    worker, router, docker_client, team_name, settings
):
    # Blocks were /28 at most when the team was made.
    settings.TEAM_SUBNET_PREFIX = settings.TEAM_SUBNET_LARGEST_PREFIX = 28
    owner = get_user_model().objects.create_user(username=f"{team_name}-owner", password="x")
    staff = get_user_model().objects.create_user(username=f"{team_name}-staff", password="x", is_staff=True)
    team = create_team(name=team_name, owner=owner)
    old_block = ipaddress.ip_network(team.network.subnet)
    assert old_block.prefixlen == 28
    try:
        service = create_service(team=team, name="site", created_by=owner)
        build = deploy_service(service=service, source_file=upload_of("addon-client"), created_by=owner)
        cache = create_addon(team=team, kind="redis", name="cache", created_by=owner)
        _wait(lambda: AddOn.objects.get(id=cache.id).status != AddOn.Status.PROVISIONING, 600, "cache provisioning")
        cache.refresh_from_db()
        assert cache.status == AddOn.Status.READY, cache.status_detail
        build = wait_for_build(build, timeout=900)
        assert build.status == "live", build.failure_reason
        service.refresh_from_db()
        release = attach(addon=cache, service=service, created_by=owner)

        def live():
            release.refresh_from_db()
            assert release.status != Release.Status.FAILED, release.failure_reason
            return release.status == Release.Status.LIVE

        _wait(live, 300, "the release with REDIS_URL is not live")
        _put(service.hostname, "/redis/greeting", "kept through the move")
        old_network = docker_client.networks.get(team_network_name(team_name))
        old_bridge = bridge_of(old_network)
        assert old_network.attrs["IPAM"]["Config"][0]["Subnet"] == str(old_block)

        # Staff raise the quota; larger blocks are given now.
        settings.TEAM_SUBNET_LARGEST_PREFIX = 24
        TeamPolicy.objects.update_or_create(team=team, defaults={"max_cpu": 2, "max_memory_mb": 4096})
        team.refresh_from_db()
        team._state.fields_cache.pop("policy", None)
        short = networks.too_small(team)
        assert short["holds"] == 6 and short["allows"] == 20 and short["larger"]

        grow(team, actor=staff)

        new_block = ipaddress.ip_network(team.network.subnet)
        assert new_block.prefixlen == 26 and not new_block.overlaps(old_block)
        answer = get_through_router(service.hostname, "/redis/greeting", timeout=30)
        assert answer.status_code == 200 and answer.json()["value"] == "kept through the move"
        network = docker_client.networks.get(team_network_name(team_name))
        assert network.id != old_network.id
        assert network.attrs["IPAM"]["Config"][0]["Subnet"] == str(new_block)
        with pytest.raises(Exception, match="not found|No such network"):
            docker_client.networks.get(old_network.id)
        instances = docker_client.containers.list(filters={"label": f"{LABEL_TEAM}={team_name}"})
        assert instances
        for container in [*instances, docker_client.containers.get(container_name(team_name, "cache"))]:
            address = container.attrs["NetworkSettings"]["Networks"][team_network_name(team_name)]["IPAddress"]
            assert ipaddress.ip_address(address) in new_block
        firewall = Firewall()
        assert old_bridge not in firewall.bridges() and bridge_of(network) in firewall.bridges()
        assert Event.objects.filter(team=team, kind="team.network_moved").count() == 1
    finally:
        LocalAddOns(get_backend("local")).remove(team_name, "cache", delete_volume=True)
        for network in docker_client.networks.list(names=[team_network_name(team_name)]):
            bridge = bridge_of(network)
            for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_TEAM}={team_name}"}):
                container.remove(force=True)
            network.remove()
            Firewall().remove(bridge)
