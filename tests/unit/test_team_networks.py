"""Team networks' address blocks: cut from TEAM_SUBNET_POOL around the host's
own networks (runtime/subnets.py), claimed in the database with a unique
constraint (accounts/networks.py), handed to the runtime in the DeploySpec,
freed with the team; a full range refuses new teams in words for an
administrator, never "deploy again"."""

import ipaddress
from decimal import Decimal
import json
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from hakobune.platform.accounts import networks
from hakobune.platform.accounts.models import Team, TeamNetwork
from hakobune.platform.accounts.services import create_team
from hakobune.platform.accounts.tokens import create_api_token
from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import advance
from hakobune.platform.services.models import Release
from hakobune.platform.services.services import ServiceActionError, create_service, deploy_service
from hakobune.runtime import subnets
from hakobune.runtime.base import ServiceRef
from hakobune.runtime.dummy import DummyBackend
from hakobune.worker import tasks
from tests.conftest import upload_of

S = BuildStatus
net = ipaddress.ip_network


class NetworkedDummy(DummyBackend):
    """The dummy backend, saying it makes team networks as the local one does."""

    capabilities = DummyBackend.capabilities | {"team_networks"}

    def remove_team_networks(self, known_teams: set[str]) -> list[str]:
        self.calls.append(("remove_team_networks", frozenset(known_teams)))
        return []

    def take_down_team_network(self, team: str) -> list[str]:
        self.calls.append(("take_down_team_network", team))
        return [f"took down {team}"]

    def make_team_network(self, team: str, subnet: str, *, allow=()) -> list[str]:
        self.calls.append(("make_team_network", (team, subnet)))
        return [f"made {team} in {subnet}"]

    def reconcile_service(self, desired) -> list[str]:
        self.calls.append(("reconcile_service", desired))
        return [f"started {desired.spec.service} again"]


@pytest.fixture
def networked(settings, monkeypatch):
    from hakobune.platform.services.backends import get_backend

    settings.RUNTIME_BACKENDS = {"local": {"BACKEND": f"{__name__}.NetworkedDummy", "OPTIONS": {}}}
    settings.TEAM_SUBNET_POOL = "10.213.0.0/16"
    settings.TEAM_SUBNET_PREFIX = 26
    settings.TEAM_SUBNET_LARGEST_PREFIX = 26  # every team a /26 here; sizing has tests of its own
    host = []  # the host's networks, as the test sets them
    monkeypatch.setattr(networks, "host_networks", lambda: list(host))
    backend = get_backend("local")
    backend.host = host
    return backend


def _owner(name="olga"):
    return get_user_model().objects.create_user(username=name, password="x", is_staff=True)


# -- the address arithmetic ----------------------------------------------------------


def test_a_pool_of_a_16_holds_1024_blocks_of_26_lowest_first():
    pool = subnets.parse_pool("10.213.0.0/16")
    assert subnets.capacity(pool, 26) == 1024
    assert [str(block) for block in list(subnets.free_blocks(pool, [], []))[:3]] == [
        "10.213.0.0/26", "10.213.0.64/26", "10.213.0.128/26"]


def test_blocks_that_overlap_the_hosts_networks_or_resolvers_are_skipped():
    pool = subnets.parse_pool("10.213.0.0/24")
    host = [net("10.213.0.70/32"),  # a resolver
            net("10.213.0.128/25"),  # a route to a LAN
            net("192.0.2.0/24")]  # far away
    assert [str(block) for block in subnets.free_blocks(pool, ["10.213.0.0/26"], host)] == []
    assert [str(block) for block in subnets.free_blocks(pool, [], host)] == ["10.213.0.0/26"]


@pytest.mark.parametrize(("text", "words"), [
    ("10.213.0.0/33", "not a network"),
    ("10.213.0.1/16", "not a network"),  # host bits set
    ("fd00::/48", "not IPv4"),
    ("10.213.0.0/28", "smaller than one team's block"),
    ("8.8.0.0/16", "not a private range"),
    ("198.18.0.0/16", "not a private range"),  # private to Python, not dropped by the firewall
])
def test_a_pool_that_cannot_be_used_is_refused_in_words(text, words):
    with pytest.raises(subnets.PoolError, match=words):
        subnets.parse_pool(text)


def test_the_hosts_networks_are_read_from_its_addresses_routes_and_resolvers(tmp_path):
    answers = {
        "addr": [{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24}]},
                 {"ifname": "docker0", "addr_info": [{"family": "inet", "local": "172.17.0.1", "prefixlen": 16}]}],
        "route": [{"dst": "default", "gateway": "192.0.2.1"}, {"dst": "10.213.4.0/22", "dev": "wg0"},
                  {"dst": "10.99.0.7", "dev": "tun0"}],
    }

    def run(command, **kwargs):
        assert command[:3] == ["ip", "-j", "-4"]
        return subprocess.CompletedProcess(command, 0, json.dumps(answers[command[3]]), "")

    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.213.0.53\nnameserver 127.0.0.53\n")
    found = subnets.host_networks(run=run, resolv_conf=str(conf))
    assert set(found) == {net("192.0.2.0/24"), net("172.17.0.0/16"), net("10.213.4.0/22"), net("10.99.0.7/32"),
                          net("10.213.0.53/32")}
    # And without `ip` at all: nothing read, nothing invented.
    assert subnets.host_networks(run=lambda *a, **k: (_ for _ in ()).throw(OSError("no ip")),
                                 resolv_conf=str(tmp_path / "none")) == []


def test_a_block_is_the_smallest_that_holds_the_containers_between_the_two_bounds():
    assert subnets.room(26) == 61 and subnets.room(24) == 253 and subnets.room(29) == 5
    assert subnets.prefix_for(10, smallest=26, largest=22) == 26  # never under the smallest
    assert subnets.prefix_for(61, smallest=26, largest=22) == 26
    assert subnets.prefix_for(62, smallest=26, largest=22) == 25
    assert subnets.prefix_for(160, smallest=26, largest=22) == 24
    assert subnets.prefix_for(100_000, smallest=26, largest=22) == 22  # never over the largest
    with pytest.raises(subnets.PoolError):
        subnets.prefix_for(10, smallest=22, largest=26)


def test_blocks_of_different_sizes_sit_side_by_side_without_overlapping():
    pool = subnets.parse_pool("10.213.0.0/22")
    taken = ["10.213.0.64/26", "10.213.1.0/24"]
    # A /24 may not take the first 256 addresses (a /26 is in them) nor the second (held).
    assert [str(b) for b in subnets.free_blocks(pool, taken, [], 24)] == ["10.213.2.0/24", "10.213.3.0/24"]
    # A /26 fits around the small one, never inside the big one.
    small = [str(b) for b in subnets.free_blocks(pool, taken, [], 26)]
    assert small[:3] == ["10.213.0.0/26", "10.213.0.128/26", "10.213.0.192/26"]
    assert not [b for b in small if net(b).subnet_of(net("10.213.1.0/24"))]
    # A big block held around smaller ones (older rows, say) still keeps them all out.
    assert [str(b) for b in subnets.free_blocks(pool, ["10.213.0.0/23", "10.213.0.64/26"], [], 24)] == [
        "10.213.2.0/24", "10.213.3.0/24"]


# -- claims ------------------------------------------------------------------------


def test_a_teams_block_is_sized_from_its_quota_twice_its_instances(networked, settings, db):
    """An instance holds at least 0.1 CPU and 64 MiB, so the quota bounds how
    many the team runs at once; a redeploy of all of them needs as many again."""
    from hakobune.platform.governance.models import TeamPolicy

    settings.TEAM_SUBNET_PREFIX, settings.TEAM_SUBNET_LARGEST_PREFIX = 28, 22
    settings.TEAM_MAX_CPU, settings.TEAM_MAX_MEMORY_MB = 8, 16384
    owner = _owner()
    # The default quota: 80 instances by CPU (256 by memory), 160 addresses: a /24.
    usual = create_team(name="usual", owner=owner)
    assert networks.containers_for(usual) == 160 and usual.network.subnet == "10.213.0.0/24"
    # A small team: 1 CPU, 10 instances, 20 addresses: a /27, after the /24.
    small = Team.objects.create(name="small")
    TeamPolicy.objects.create(team=small, max_cpu=1)
    assert networks.claim(small) == "10.213.1.0/27"
    # Memory can be the tighter bound: 640 MiB is 10 instances of 64 MiB.
    lean = Team.objects.create(name="lean")
    TeamPolicy.objects.create(team=lean, max_memory_mb=640)
    assert networks.containers_for(lean) == 20 and networks.claim(lean) == "10.213.1.32/27"
    # A huge quota gets the largest block, no more.
    huge = Team.objects.create(name="huge")
    TeamPolicy.objects.create(team=huge, max_cpu=1000, max_memory_mb=10_000_000)
    assert networks.claim(huge) == "10.213.4.0/22"


def test_a_pool_with_no_block_of_the_teams_size_left_says_which_size_it_needed(networked, settings, db):
    settings.TEAM_SUBNET_POOL = "10.213.0.0/24"
    settings.TEAM_SUBNET_PREFIX, settings.TEAM_SUBNET_LARGEST_PREFIX = 28, 24
    settings.TEAM_MAX_CPU, settings.TEAM_MAX_MEMORY_MB = 8, 16384
    owner = _owner()
    from hakobune.platform.governance.models import TeamPolicy

    small = Team.objects.create(name="small")
    TeamPolicy.objects.create(team=small, max_cpu="0.3")  # 3 instances, 6 addresses: a /28
    assert networks.claim(small) == "10.213.0.0/28"
    with pytest.raises(networks.NoRoomForTeamNetwork) as refused:
        create_team(name="usual", owner=owner)  # wants the whole /24, of which a /28 is held
    text = refused.value.in_words()
    assert "no free /24 block" in text and "room for 253 containers" in text and "widen TEAM_SUBNET_POOL" in text
    assert "deploy again" not in text.lower()



def test_a_new_team_gets_the_lowest_free_block_skipping_the_hosts(networked, db):
    networked.host.append(net("10.213.0.0/25"))  # a LAN on the host, over the first two blocks
    owner = _owner()
    first = create_team(name="first", owner=owner)
    second = create_team(name="second", owner=owner)
    assert first.network.subnet == "10.213.0.128/26"
    assert second.network.subnet == "10.213.0.192/26"


def test_a_full_pool_refuses_the_new_team_for_the_administrator_and_creates_nothing(networked, settings, client,
                                                                                   login, db):
    settings.TEAM_SUBNET_POOL = "10.213.0.0/25"  # two blocks
    owner = _owner()
    create_team(name="one", owner=owner)
    create_team(name="two", owner=owner)

    with pytest.raises(networks.NoRoomForTeamNetwork) as refused:
        create_team(name="three", owner=owner)
    text = refused.value.in_words()
    assert "no room for another team network" in text and "widen TEAM_SUBNET_POOL" in text
    assert "deploy again" not in text.lower()
    assert not Team.objects.filter(name="three").exists()  # the team, its membership: rolled back

    page = login(owner).post(reverse("accounts:team_new"), {"name": "four"}).content.decode()
    assert "an administrator must widen TEAM_SUBNET_POOL" in page
    _, token = create_api_token(user=owner, name="t")
    answer = client.post("/api/v1/teams/", json.dumps({"name": "five"}), content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 403 and answer.json()["code"] == "no_room_for_team_network"
    assert "widen TEAM_SUBNET_POOL" in answer.json()["error"]
    assert not Team.objects.filter(name__in=["four", "five"]).exists()


def test_a_deleted_teams_block_is_given_out_again(networked, settings, db):
    settings.TEAM_SUBNET_POOL = "10.213.0.0/26"  # one block
    owner = _owner()
    gone = create_team(name="gone", owner=owner)
    assert gone.network.subnet == "10.213.0.0/26"
    gone.delete()
    assert not TeamNetwork.objects.exists()
    assert create_team(name="next", owner=owner).network.subnet == "10.213.0.0/26"


def test_a_block_still_routed_on_the_host_is_not_given_out_again(networked, settings, db):
    """The reconciler removes a deleted team's network later; until then the
    host routes its block, and a new team does not get it."""
    owner = _owner()
    create_team(name="gone", owner=owner).delete()
    networked.host.append(net("10.213.0.0/26"))  # its bridge is still there
    assert create_team(name="next", owner=owner).network.subnet == "10.213.0.64/26"


def test_two_claims_at_once_never_share_a_block(networked, monkeypatch, db):
    """Both saw the same free block; the unique subnet makes the second one
    move on to the next block instead of sharing it."""
    owner = _owner()
    one, two = Team.objects.create(name="one"), Team.objects.create(name="two")
    seen_free = list(subnets.free_blocks(networks.pool(), [], []))[:3]

    def stale_view(pool, taken, avoid, prefix):
        # What a claim that read the table before the other one wrote sees.
        return iter(seen_free)

    networks.claim(one)
    monkeypatch.setattr(networks, "free_blocks", stale_view)
    assert networks.claim(two) == "10.213.0.64/26"
    assert networks.claim(two) == "10.213.0.64/26"  # a team that has one keeps it
    assert sorted(TeamNetwork.objects.values_list("subnet", flat=True)) == ["10.213.0.0/26", "10.213.0.64/26"]
    assert owner


def test_no_blocks_without_a_pool_or_without_a_runtime_that_makes_team_networks(settings, dummy_backend, db):
    assert networks.enabled() is False  # the dummy makes no team networks
    settings.RUNTIME_BACKENDS = {"local": {"BACKEND": f"{__name__}.NetworkedDummy", "OPTIONS": {}}}
    assert networks.enabled() is True
    settings.TEAM_SUBNET_POOL = ""
    assert networks.enabled() is False
    assert create_team(name="plain", owner=_owner()).__class__ is Team
    assert not TeamNetwork.objects.exists()


# -- the runtime gets it -------------------------------------------------------------


def _deploy(service, owner):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    for current, following in [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING),
                               (S.BUILDING, S.DEPLOYING)]:
        advance(build.id, current, following)
    Build.objects.filter(id=build.id).update(image="hakobune/x/hello:one")
    tasks.deploy_release(build.id)
    build.refresh_from_db()
    return build


def test_the_deploy_spec_carries_the_teams_block_and_an_older_team_claims_one_at_its_deploy(networked, queued_tasks,
                                                                                            db):
    owner = _owner()
    older = Team.objects.create(name="older")  # made before teams had blocks
    service = create_service(team=older, name="hello", created_by=owner)
    build = _deploy(service, owner)
    assert build.status == "live"
    spec = [spec for name, spec in networked.calls if name == "deploy"][-1]
    assert spec.network_subnet == "10.213.0.0/26" == TeamNetwork.objects.get(team=older).subnet


def test_a_deploy_with_no_room_left_fails_with_the_administrators_reason_not_deploy_again(networked, settings,
                                                                                          queued_tasks, db):
    settings.TEAM_SUBNET_POOL = "10.213.0.0/26"
    owner = _owner()
    create_team(name="holder", owner=owner)
    older = Team.objects.create(name="older")
    service = create_service(team=older, name="hello", created_by=owner)
    build = _deploy(service, owner)
    assert build.status == "failed"
    assert "no room for another team network" in build.failure_reason
    assert "widen TEAM_SUBNET_POOL" in build.failure_reason
    assert "deploy again" not in build.failure_reason.lower()
    assert not [name for name, _ in networked.calls if name == "deploy"]
    release = Release.objects.get(service=service)
    assert release.status == "failed" and "widen TEAM_SUBNET_POOL" in release.failure_reason


def test_a_full_team_network_fails_the_deploy_for_the_administrator_never_as_passing(networked, queued_tasks, db):
    """The engine found no address for the new instance: it stays full until
    the team runs less, so the person is not told to deploy again, and the
    step is not retried."""
    from hakobune.platform.diagnoses import diagnose
    from hakobune.platform.failures import FailureKind, classify
    from hakobune.runtime.base import TeamNetworkFull

    owner = _owner()
    team = create_team(name="crowd", owner=owner)
    full = TeamNetworkFull("crowd", "10.213.0.0/26", 61)
    assert classify(full) == FailureKind.PLATFORM and diagnose(full).rule == "network.full"
    networked.fail_next_deploys(full)
    service = create_service(team=team, name="hello", created_by=owner)
    build = _deploy(service, owner)
    assert build.status == "failed" and build.failure_rule == "network.full"
    for text in (build.failure_reason, build.failure_text):
        assert "network of team crowd is full" in text and "10.213.0.0/26" in text and "61 containers" in text
        assert "scale down, stop or delete services" in text and "An administrator can" in text
        assert "deploy again." not in text.lower() and "deploy again in" not in text.lower()
    assert len([name for name, _ in networked.calls if name == "deploy"]) == 1  # not retried
    assert Release.objects.get(service=service).status == "failed"


# -- the local runtime ------------------------------------------------------------------


def test_the_local_backend_names_a_full_network_and_removes_the_instance_that_got_no_address(monkeypatch):
    from docker.errors import APIError

    from hakobune.runtime.base import DeploySpec, TeamNetworkFull
    from hakobune.runtime.docker_local import DockerLocalBackend

    network = FakeNetwork("hakobune-team-crowd", "crowd")
    network.attrs["IPAM"] = {"Config": [{"Subnet": "10.213.0.0/29", "Gateway": "10.213.0.1"}]}
    removed = []

    class Container:
        def __init__(self, name):
            self.name = name

        def remove(self, force=False, v=False):
            removed.append(self.name)

    class Containers:
        def run(self, image, **kwargs):
            self.name = kwargs["name"]
            raise APIError("500 Server Error: Internal Server Error (\"no available IPv4 addresses on this "
                           "network's address pools: hakobune-team-crowd (0123)\")")

        def get(self, name):
            return Container(name)

    class Api:
        def create_endpoint_config(self, **kwargs):
            return kwargs

    client = type("Client", (), {"containers": Containers(), "api": Api()})()
    backend = DockerLocalBackend("local", firewall="off")
    monkeypatch.setattr(backend, "_client", client)
    spec = DeploySpec(team="crowd", service="hello", release_id=9, release_number=3, image="x", hostname="h")
    with pytest.raises(TeamNetworkFull) as full:
        backend._run_instance(spec, 0, network)
    assert full.value.params == {"team": "crowd", "subnet": "10.213.0.0/29", "room": 5}
    assert full.value.permanent and removed == [client.containers.name]



class FakeNetwork:
    def __init__(self, name, team, containers=None, id="0123456789abcdef0000"):
        self.name = name
        self.id = id
        self.attrs = {"Id": id, "Options": {}, "Labels": {"org.hakobune.team": team},
                      "Containers": containers or {}}
        self.removed = False

    def reload(self):
        pass

    def remove(self):
        self.removed = True


def test_the_local_backend_makes_the_team_network_in_its_block_and_keeps_an_older_one_as_it_is(monkeypatch):
    from hakobune.runtime.docker_local import DockerLocalBackend

    made = []
    existing = []

    class Networks:
        def list(self, names=None, filters=None):
            return list(existing)

        def create(self, name, **kwargs):
            made.append(kwargs)
            return FakeNetwork(name, "acme")

    backend = DockerLocalBackend("local", firewall="off")
    monkeypatch.setattr(backend, "_client", type("Client", (), {"networks": Networks()})())
    backend._team_network("acme", subnet="10.213.0.64/26")
    pool = made[0]["ipam"]["Config"][0]
    assert pool["Subnet"] == "10.213.0.64/26" and pool["Gateway"] == "10.213.0.65"

    # A network of the team's name made from Docker's pools before: used, not replaced.
    existing.append(FakeNetwork("hakobune-team-acme", "acme"))
    assert backend._team_network("acme", subnet="10.213.0.128/26") is existing[0]
    assert len(made) == 1


def test_the_networks_of_deleted_teams_go_with_their_rules_once_their_containers_have(monkeypatch):
    from hakobune.runtime.docker_local import DockerLocalBackend

    kept = FakeNetwork("hakobune-team-live", "live", id="aaaaaaaaaaaa0000")
    gone = FakeNetwork("hakobune-team-gone", "gone", id="bbbbbbbbbbbb0000")
    busy = FakeNetwork("hakobune-team-busy", "busy", containers={"c1": {}}, id="cccccccccccc0000")

    class Networks:
        def list(self, names=None, filters=None):
            assert filters == {"label": "org.hakobune.managed=hakobune"}
            return [kept, gone, busy]

    removed_rules = []
    backend = DockerLocalBackend("local")
    monkeypatch.setattr(backend, "_client", type("Client", (), {"networks": Networks()})())
    monkeypatch.setattr(backend.firewall, "remove", removed_rules.append)
    done = backend.remove_team_networks({"live"})
    assert gone.removed and not kept.removed and not busy.removed
    assert removed_rules == ["br-bbbbbbbbbbbb"]
    assert done == ["removed the network hakobune-team-gone: no team gone exists"]


def test_a_block_another_network_took_first_is_exchanged_for_a_free_one(networked, queued_tasks, db):
    """Two Hakobune on one host sharing the range: the engine refuses the
    block the other made a network in first; the deploy takes the next."""
    from hakobune.runtime.base import RuntimeBackendError

    owner = _owner()
    team = create_team(name="late", owner=owner)
    assert team.network.subnet == "10.213.0.0/26"
    taken = RuntimeBackendError("Pool overlaps with other one on this address space", permanent=False)
    taken.subnet_taken = "10.213.0.0/26"
    networked.fail_next_deploys(taken)
    networked.host.append(net("10.213.0.0/26"))  # the other one's bridge, now routed
    build = _deploy(create_service(team=team, name="hello", created_by=owner), owner)
    assert build.status == "live"
    assert TeamNetwork.objects.get(team=team).subnet == "10.213.0.64/26"
    assert [spec.network_subnet for name, spec in networked.calls if name == "deploy"] == [
        "10.213.0.0/26", "10.213.0.64/26"]


def test_a_block_held_by_a_leftover_engine_network_is_skipped_on_the_second_claim(networked, queued_tasks, db):
    """A network left by a team deleted outside Hakobune still holds its block
    in the engine, though no team row does: the retry avoids every block the
    engine lists, not only the one refused."""
    from hakobune.runtime.base import RuntimeBackendError

    owner = _owner()
    team = create_team(name="late", owner=owner)
    taken = RuntimeBackendError("Pool overlaps with other one on this address space", permanent=False)
    taken.subnet_taken = "10.213.0.0/26"
    taken.engine_subnets = [net("10.213.0.0/26"), net("10.213.0.64/26")]  # neither routed on the host
    networked.fail_next_deploys(taken)
    build = _deploy(create_service(team=team, name="hello", created_by=owner), owner)
    assert build.status == "live"
    assert TeamNetwork.objects.get(team=team).subnet == "10.213.0.128/26"


def test_two_refused_blocks_in_a_row_are_a_platform_fault_never_deploy_again(networked, queued_tasks, db):
    from hakobune.runtime.base import RuntimeBackendError

    owner = _owner()
    team = create_team(name="late", owner=owner)
    refusals = []
    for subnet in ("10.213.0.0/26", "10.213.0.64/26"):
        refused = RuntimeBackendError("Pool overlaps with other one on this address space", permanent=False)
        refused.subnet_taken, refused.engine_subnets = subnet, []
        refusals.append(refused)
    networked.fail_next_deploys(*refusals)
    service = create_service(team=team, name="hello", created_by=owner)
    build = _deploy(service, owner)
    assert build.status == "failed" and build.failure_rule == "network.overlap"
    for text in (build.failure_reason, build.failure_text):
        assert "10.213.0.64/26 overlaps a network it already has" in text and "docker network ls" in text
        assert "deploy again." not in text.lower() and "deploy again in" not in text.lower()
    assert Release.objects.get(service=service).status == "failed"


# -- an administrator deletes a team -------------------------------------------------------


def test_an_administrator_deletes_a_team_with_live_services_after_a_confirmation(
        networked, settings, queued_tasks, client, django_capture_on_commit_callbacks, db):
    settings.TEAM_SUBNET_POOL = "10.213.0.0/26"  # one block: the next team needs this one's
    owner = get_user_model().objects.create_user(username="olga", password="x")
    admin = get_user_model().objects.create_superuser(username="ada", password="x")
    team = create_team(name="gone", owner=owner)
    service = create_service(team=team, name="hello", created_by=owner)
    assert _deploy(service, owner).status == "live" and _deploy(service, owner).status == "live"
    assert Release.objects.filter(service=service).count() == 2  # one live, one it replaced
    delete_url = reverse("admin:accounts_team_delete", args=[team.id])

    # A member who is not an administrator cannot.
    client.force_login(owner)
    assert client.post(delete_url, {"post": "yes"}).status_code == 302  # to the admin's login
    assert Team.objects.filter(id=team.id, deleting_since__isnull=True).exists()

    # The administrator is asked to confirm, and told what goes with the team.
    client.force_login(admin)
    page = client.get(delete_url).content.decode()
    assert "Service gone/hello: its instances stopped and removed, with its 2 releases and 2 builds" in page
    assert "Its network (10.213.0.0/26): removed, its address block free for another team" in page
    assert "protected" not in page.lower() and "Cannot delete" not in page
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(delete_url, {"post": "yes"}, follow=True)
    assert "service is being stopped and removed" in answer.content.decode()
    assert ("destroy_team", team.id) in queued_tasks
    # Meanwhile its services are no longer wanted, and no new one is made in it.
    service.refresh_from_db()
    assert service.desired_state == "deleted"
    with pytest.raises(ServiceActionError, match="being deleted"):
        create_service(team=Team.objects.get(id=team.id), name="late", created_by=owner)

    tasks.destroy_team(team.id)

    assert ("destroy", ServiceRef("gone", "hello")) in networked.calls
    assert ("remove_team_networks", frozenset()) in networked.calls
    assert not Team.objects.filter(id=team.id).exists()
    assert not Release.objects.filter(service_id=service.id).exists()
    assert not Build.objects.filter(service_id=service.id).exists()
    # Its block serves the next team.
    assert create_team(name="next", owner=owner).network.subnet == "10.213.0.0/26"
    # Run twice (a duplicate delivery): nothing more to do.
    tasks.destroy_team(team.id)


def test_a_team_not_marked_for_deletion_is_never_destroyed_by_a_stray_task(networked, queued_tasks, db):
    owner = _owner()
    team = create_team(name="stays", owner=owner)
    create_service(team=team, name="hello", created_by=owner)
    tasks.destroy_team(team.id)
    assert Team.objects.filter(id=team.id).exists() and team.services.count() == 1
    assert not [call for call in networked.calls if call[0] == "destroy"]


def test_only_administrators_delete_teams(networked, db):
    from hakobune.platform.services.services import delete_team

    owner = get_user_model().objects.create_user(username="olga", password="x")
    team = create_team(name="acme", owner=owner)
    with pytest.raises(ServiceActionError, match="Only administrators"):
        delete_team(team=team, deleted_by=owner)
    assert Team.objects.get(id=team.id).deleting_since is None


def test_a_team_deletion_that_did_not_end_is_sent_again_by_the_reconciler(networked, queued_tasks, db):
    from datetime import timedelta

    from django.utils import timezone

    from hakobune.platform.services import housekeeping

    owner = _owner()
    stuck = create_team(name="stuck", owner=owner)
    just_now = create_team(name="justnow", owner=owner)
    create_team(name="kept", owner=owner)
    Team.objects.filter(id=stuck.id).update(deleting_since=timezone.now() - timedelta(minutes=5))
    Team.objects.filter(id=just_now.id).update(deleting_since=timezone.now())
    # Only the team whose deletion should have ended by now; one just asked
    # for has its own task on the way, and a team not being deleted is left alone.
    assert housekeeping.resend_team_deletions() == [stuck.id]
    assert queued_tasks == [("destroy_team", stuck.id)]


# -- a quota raised past the block: moving the team to a larger one -----------------------


@pytest.fixture
def small_team(networked, settings, db):
    """Team "tiny" of 0.3 CPU: 3 instances, 6 addresses, a /28 (room for 13
    containers: 6 instances, each started again beside itself)."""
    from hakobune.platform.governance.models import TeamPolicy

    settings.TEAM_SUBNET_PREFIX, settings.TEAM_SUBNET_LARGEST_PREFIX = 28, 24
    owner = _owner("tina")
    team = create_team(name="tiny", owner=owner)
    TeamPolicy.objects.filter(team=team).delete()
    TeamPolicy.objects.create(team=team, max_cpu="0.3", max_memory_mb=4096)
    networks.release(team)
    assert networks.claim(team) == "10.213.0.0/28"
    team.owner = owner
    return team


def _raise_quota(team, cpu):
    from hakobune.platform.governance.models import TeamPolicy

    TeamPolicy.objects.filter(team=team).update(max_cpu=cpu, max_memory_mb=4096)
    team._state.fields_cache.pop("policy", None)  # as a team read afresh has it


def test_a_block_that_holds_the_quota_is_not_too_small_and_one_raised_past_it_says_by_how_much(small_team, settings):
    assert networks.too_small(small_team) is None
    assert "needs no larger one" in networks.grow_refusal(small_team)
    _raise_quota(small_team, 2)  # 20 instances, 40 addresses: a /26
    assert networks.too_small(small_team) == {"subnet": "10.213.0.0/28", "holds": 6, "allows": 20, "prefix": 26,
                                              "room": 30, "larger": True}
    assert networks.grow_refusal(small_team) == ""
    settings.TEAM_SUBNET_LARGEST_PREFIX = 28  # no larger block is given
    assert networks.too_small(small_team)["larger"] is False
    assert "is the largest Hakobune gives (TEAM_SUBNET_LARGEST_PREFIX)" in networks.grow_refusal(small_team)


def test_staff_raising_a_quota_past_the_block_read_the_numbers_and_are_offered_the_move(
    small_team, login, queued_tasks, django_capture_on_commit_callbacks
):
    staff = get_user_model().objects.create_user(username="sam", password="x", is_staff=True)
    browser = login(staff)
    answer = browser.post(reverse("governance:team_policy", args=["tiny"]),
                          {"max_services": 10, "max_cpu": 2, "max_memory_mb": 4096, "allowed_networks": ""})
    assert answer.status_code == 302 and answer.url == reverse("governance:team_policy", args=["tiny"])
    page = browser.get(answer.url).content.decode()
    assert ("Team tiny&#x27;s network block 10.213.0.0/28 holds 6 instances" in page
            and "its quota now allows 20" in page and "a /26, room for 30 instances" in page)
    assert "stops its services and add-ons for a few seconds" in page and "Move to a larger block" in page

    with django_capture_on_commit_callbacks(execute=True):
        browser.post(reverse("governance:grow_network", args=["tiny"]))
    assert queued_tasks == [("grow_team_network", small_team.id, staff.id)]
    # A member who is not staff cannot ask for it.
    from hakobune.platform.accounts.models import Membership

    member = get_user_model().objects.create_user(username="mia", password="x")
    Membership.objects.create(team=small_team, user=member, role="owner")
    assert login(member).post(reverse("governance:grow_network", args=["tiny"])).status_code == 403
    assert len(queued_tasks) == 1


def test_a_quota_the_block_still_holds_saves_without_a_word_about_the_network(small_team, login, queued_tasks):
    staff = get_user_model().objects.create_user(username="sam", password="x", is_staff=True)
    answer = login(staff).post(reverse("governance:team_policy", args=["tiny"]),
                               {"max_services": 10, "max_cpu": "0.3", "max_memory_mb": 4096, "allowed_networks": ""})
    assert answer.url == reverse("governance:quotas")
    assert "Move to a larger block" not in login(staff).get(
        reverse("governance:team_policy", args=["tiny"])).content.decode()


def test_growing_moves_the_team_to_a_block_of_its_quota_and_starts_its_live_services_there(small_team, networked,
                                                                                          queued_tasks):
    from hakobune.platform.observability.models import Event
    from hakobune.platform.services.team_networks import grow

    service = create_service(team=small_team, name="hello", created_by=small_team.owner, cpu=Decimal("0.1"),
                             memory_mb=64)
    assert _deploy(service, small_team.owner).status == "live"
    _raise_quota(small_team, 2)
    networked.calls.clear()

    grow(small_team)
    # The /28 was the first block; a /26 aligned on its size is the next free one.
    assert list(TeamNetwork.objects.values_list("subnet", "moving")) == [("10.213.0.64/26", False)]
    assert small_team.network.subnet == "10.213.0.64/26" and networks.too_small(small_team) is None
    names = [name for name, _ in networked.calls]
    assert names == ["take_down_team_network", "make_team_network", "reconcile_service"]
    assert networked.calls[1][1] == ("tiny", "10.213.0.64/26")
    desired = networked.calls[2][1]
    assert desired.spec.service == "hello" and desired.spec.network_subnet == "10.213.0.64/26"
    assert desired.state == "running"
    event = Event.objects.get(kind="team.network_moved")
    assert event.params["old"] == "10.213.0.0/28" and event.params["new"] == "10.213.0.64/26"
    # The old block is free for the next team.
    other = Team.objects.create(name="other")
    from hakobune.platform.governance.models import TeamPolicy

    TeamPolicy.objects.create(team=other, max_cpu="0.3")
    assert networks.claim(other) == "10.213.0.0/28"


def test_a_move_is_refused_in_words_and_leaves_the_team_as_it_was(small_team, networked, settings, db):
    from django.core.management import CommandError, call_command

    from hakobune.platform.services.team_networks import GrowRefused, grow

    with pytest.raises(GrowRefused, match="already holds every instance its quota allows"):
        grow(small_team)
    with pytest.raises(CommandError, match="needs no larger one"):
        call_command("team_network", "grow", "tiny")
    with pytest.raises(CommandError, match="There is no team nobody"):
        call_command("team_network", "grow", "nobody")
    fresh = Team.objects.create(name="fresh")
    with pytest.raises(GrowRefused, match="has no network block yet"):
        grow(fresh)
    # The range has no /26 left: the administrator's reason, and no block held for the move.
    settings.TEAM_SUBNET_POOL = "10.213.0.0/26"
    _raise_quota(small_team, 2)
    with pytest.raises(networks.NoRoomForTeamNetwork) as refused:
        grow(small_team)
    assert "widen TEAM_SUBNET_POOL" in refused.value.in_words()
    assert list(TeamNetwork.objects.values_list("subnet", "moving")) == [("10.213.0.0/28", False)]
    assert not [name for name, _ in networked.calls if name == "take_down_team_network"]


def test_a_move_whose_network_could_not_be_taken_down_gives_the_new_block_back(small_team, networked, monkeypatch):
    from hakobune.platform.services.team_networks import grow
    from hakobune.runtime.base import RuntimeBackendError

    _raise_quota(small_team, 2)

    def engine_away(team):
        raise RuntimeBackendError("the Docker Engine failed", permanent=False)

    monkeypatch.setattr(networked, "take_down_team_network", engine_away)
    with pytest.raises(RuntimeBackendError):
        grow(small_team)
    assert list(TeamNetwork.objects.values_list("subnet", "moving")) == [("10.213.0.0/28", False)]


def test_the_block_to_move_to_is_claimed_once_even_by_two_moves_at_once(small_team, monkeypatch):
    """The unique (team, moving) row: a second move's claim finds the first's
    block instead of taking another; and no team holds two blocks to move to."""
    from django.db import IntegrityError, transaction

    _raise_quota(small_team, 2)
    seen_free = list(subnets.free_blocks(networks.pool(), ["10.213.0.0/28"], [], 26))[:2]
    first = networks.claim(small_team, moving=True)
    monkeypatch.setattr(networks, "free_blocks", lambda pool, taken, avoid, prefix: iter(seen_free[1:]))
    assert networks.claim(small_team, moving=True) == first == "10.213.0.64/26"
    with pytest.raises(IntegrityError), transaction.atomic():
        TeamNetwork.objects.create(team=small_team, subnet="10.213.1.0/26", moving=True)
    assert small_team.network.subnet == "10.213.0.0/28"  # its own block until the move ends
    assert networks.subnets_by_team() == {"tiny": "10.213.0.0/28"}
