"""An administrator deletes a team whose service is live, with releases: the
workers stop and remove its instances and route, then the team, and remove
its network and its firewall rules; the team's address block serves the
next team. (Before, the admin site refused: a release protects its build.)"""

import time

import pytest
from django.contrib.auth import get_user_model

from hakobune.platform.accounts.models import Team, TeamNetwork
from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds.models import Build
from hakobune.platform.services.housekeeping import reconcile
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.services import create_service, delete_team, deploy_service, restart_service
from hakobune.runtime.docker_local import LABEL_TEAM, team_network_name
from hakobune.runtime.firewall import Firewall, bridge_of
from tests.conftest import upload_of
from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _wait(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} after {timeout} s")


def test_an_administrator_deletes_a_team_with_a_live_service_and_its_network_goes(
        worker, router, docker_client, team_name):
    users = get_user_model()
    owner = users.objects.create_user(username=f"{team_name}-owner", password="x")
    admin = users.objects.create_user(username=f"{team_name}-admin", password="x", is_staff=True)
    team = create_team(name=team_name, owner=owner)
    block = team.network.subnet
    service = create_service(team=team, name="site", created_by=owner)
    build = wait_for_build(deploy_service(service=service, source_file=upload_of("static-site"), created_by=owner),
                           timeout=900)
    assert build.status == "live", build.failure_reason
    service.refresh_from_db()
    restarted = restart_service(service=service, created_by=owner)  # a release made without a build
    _wait(lambda: Release.objects.get(id=restarted.id).status == Release.Status.LIVE, 120, "the restart not live")
    assert get_through_router(service.hostname, timeout=10).status_code == 200
    network = docker_client.networks.get(team_network_name(team_name))
    bridge = bridge_of(network)
    assert bridge in Firewall().bridges()

    assert delete_team(team=team, deleted_by=admin) == 1

    _wait(lambda: not Team.objects.filter(id=team.id).exists(), 180, "the team is still there")
    assert not Service.objects.filter(id=service.id).exists()
    assert not Build.objects.filter(id=build.id).exists() and not Release.objects.filter(id=restarted.id).exists()
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_TEAM}={team_name}"})
    assert not docker_client.networks.list(names=[team_network_name(team_name)])
    if bridge in Firewall().bridges():
        # A reconcile that listed the networks just before this one was
        # removed may have put its rules back; the next reconcile (the
        # scheduler's, every RECONCILE_SECONDS) prunes the rules of removed
        # networks.
        reconcile()
    assert bridge not in Firewall().bridges()
    assert get_through_router(service.hostname, timeout=10).status_code != 200
    # The block is free: the next team may have it.
    assert not TeamNetwork.objects.filter(subnet=block).exists()
