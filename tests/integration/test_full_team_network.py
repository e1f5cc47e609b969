"""A team whose network is full: an owner's team is given a tiny block (a
/29: five addresses for containers), runs a service of three instances, and
redeploys it. The new release's instances start beside the live ones, the
sixth finds no address, and the deploy fails with the diagnosis that the
team's network is full, in words an administrator can act on, classified as
a platform fault, never "deploy again". The live release keeps answering and
the instance that got no address is not left behind."""

import ipaddress
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from hakobune.platform.accounts.services import create_team
from hakobune.platform.diagnoses import RULES
from hakobune.platform.failures import FailureKind
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.runtime.docker_local import LABEL_TEAM, team_network_name
from tests.conftest import upload_of
from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_redeploy_that_finds_the_team_network_full_says_so_and_the_live_release_keeps_serving(
    worker, router, docker_client, team_name, settings
):
    # Every team made now gets a /29, whatever its quota.
    settings.TEAM_SUBNET_PREFIX = settings.TEAM_SUBNET_LARGEST_PREFIX = 29
    owner = get_user_model().objects.create_user(username=f"{team_name}-owner", password="x")
    team = create_team(name=team_name, owner=owner)
    block = ipaddress.ip_network(team.network.subnet)
    assert block.prefixlen == 29

    service = create_service(team=team, name="site", created_by=owner, instances=3, cpu=Decimal("0.1"),
                             memory_mb=64)
    first = wait_for_build(deploy_service(service=service, source_file=upload_of("static-site"), created_by=owner),
                           timeout=900)
    assert first.status == "live", first.failure_reason
    network = docker_client.networks.get(team_network_name(team_name))
    assert network.attrs["IPAM"]["Config"][0]["Subnet"] == str(block)

    second = wait_for_build(deploy_service(service=service, source_file=upload_of("static-site"), created_by=owner),
                            timeout=900)
    assert second.status == "failed"
    assert second.failure_rule == "network.full"
    assert RULES[second.failure_rule].kind == FailureKind.PLATFORM  # not a passing fault: no retries
    for text in (second.failure_reason, second.failure_text):
        assert f"network of team {team_name} is full" in text
        assert f"{block} has room for 5 containers" in text
        assert "scale down, stop or delete services" in text and "An administrator can" in text
        assert "deploy again." not in text.lower() and "deploy again in" not in text.lower()

    # The live release still answers; only its three instances are left.
    service.refresh_from_db()
    assert service.live_release.build_id == first.id
    answer = get_through_router(service.hostname, timeout=10)
    assert answer.status_code == 200 and "hello from static-site" in answer.text
    left = docker_client.containers.list(all=True, filters={"label": f"{LABEL_TEAM}={team_name}"})
    assert len(left) == 3 and all(container.status == "running" for container in left)
