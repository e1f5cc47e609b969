"""More teams than Docker's default address pools hold (about 31 bridge
networks): 40 teams, each with its network in its own block of
TEAM_SUBNET_POOL and a service answering through the router. A few deploy
through the whole pipeline (the static-site fixture); the others start the
image those built through the runtime directly, with the spec the platform
would give them, which is what makes their networks. Everything made is
removed afterwards: the teams are deleted, and the runtime's clean-up of
deleted teams removes their networks and their firewall rules."""

import dataclasses
import ipaddress
import secrets

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from hakobune.platform.accounts import networks
from hakobune.platform.accounts.models import Team, TeamNetwork
from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.backends import get_backend
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.releases import deploy_spec
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.runtime.docker_local import team_network_name
from hakobune.runtime.firewall import PER_BRIDGE_CHAINS, Firewall, bridge_of
from tests.conftest import upload_of
from tests.support.infrastructure import get_through_router, remove_team_containers, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TEAMS = 40  # Docker's default pools: about 31
THROUGH_THE_PIPELINE = 3


def test_forty_teams_each_get_a_network_of_their_own_and_a_service_that_answers(worker, router, docker_client):
    prefix = f"mt{secrets.token_hex(2)}"
    owner = get_user_model().objects.create_user(username=f"{prefix}-owner", password="x", is_staff=True)
    backend = get_backend("local")
    names = [f"{prefix}-{n:02d}" for n in range(TEAMS)]
    hostnames = {}
    try:
        teams = [create_team(name=name, owner=owner) for name in names]
        blocks = {team.name: ipaddress.ip_network(team.network.subnet) for team in teams}
        pool = ipaddress.ip_network(settings.TEAM_SUBNET_POOL)
        assert len(set(blocks.values())) == TEAMS
        # Each sized from its quota (the default one here: the same size for all).
        assert all(blocks[team.name].subnet_of(pool) and blocks[team.name].prefixlen == networks.block_prefix(team)
                   for team in teams)

        # A few through the whole pipeline, at once.
        builds = []
        for team in teams[:THROUGH_THE_PIPELINE]:
            service = create_service(team=team, name="site", created_by=owner)
            builds.append(deploy_service(service=service, source_file=upload_of("static-site"), created_by=owner))
        for build in builds:
            build = wait_for_build(build, timeout=900)
            log = "\n".join(build.log_lines.values_list("text", flat=True))
            assert build.status == "live", f"{build.failure_reason}\n{log[-3000:]}"
            hostnames[build.service.team.name] = build.service.hostname
        first = builds[0].service
        first.refresh_from_db()
        spec = deploy_spec(first, first.live_release)

        # The others: the same image, each its own team, network and address.
        for number, team in enumerate(teams[THROUGH_THE_PIPELINE:], start=1):
            hostname = spec.hostname.replace(first.team.name, team.name)
            backend.deploy(dataclasses.replace(
                spec, team=team.name, hostname=hostname, release_id=10_000_000 + number,
                network_subnet=team.network.subnet,
            ))
            hostnames[team.name] = hostname

        for name, hostname in hostnames.items():
            answer = get_through_router(hostname, timeout=10)
            assert answer.status_code == 200 and "hello from static-site" in answer.text, (name, answer.status_code)

        firewall = Firewall()
        rules = {chain: firewall.rules(chain) for chain in PER_BRIDGE_CHAINS}
        for name in names:
            network = docker_client.networks.get(team_network_name(name))
            assert ipaddress.ip_network(network.attrs["IPAM"]["Config"][0]["Subnet"]) == blocks[name]
            bridge = bridge_of(network)
            # Three rules a team: the jump in for replies, its own team, the jump out.
            assert sum(f'"hakobune:{bridge}"' in line for lines in rules.values() for line in lines) == 3
    finally:
        bridges = {}
        for name in names:
            remove_team_containers(docker_client, name)
            for network in docker_client.networks.list(names=[team_network_name(name)]):
                bridges[name] = bridge_of(network)
        for hostname in hostnames.values():
            backend.router.remove_route(hostname)
        # A release holds its build (PROTECT): releases first, then the teams with the rest.
        Service.objects.filter(team__name__in=names).update(live_release=None)
        Release.objects.filter(service__team__name__in=names).delete()
        Team.objects.filter(name__in=names).delete()
        # What the reconciler does for deleted teams.
        backend.remove_team_networks(set(Team.objects.values_list("name", flat=True)))
        for image in docker_client.images.list(name=f"hakobune/{prefix}-*/*"):
            for tag in (tag for tag in image.tags if tag.startswith(f"hakobune/{prefix}-")):
                docker_client.images.remove(tag, noprune=True)

    assert not TeamNetwork.objects.filter(team__name__in=names).exists()
    assert not [n for n in docker_client.networks.list() if n.name.startswith(f"hakobune-team-{prefix}-")]
    left = Firewall().bridges() & set(bridges.values())
    assert not left, f"rules of removed networks left: {sorted(left)}"
