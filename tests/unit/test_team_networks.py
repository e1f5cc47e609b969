"""Team networks' address blocks: cut from TEAM_SUBNET_POOL around the host's
own networks (runtime/subnets.py), claimed in the database with a unique
constraint (accounts/networks.py), handed to the runtime in the DeploySpec,
freed with the team; a full range refuses new teams in words for an
administrator, never "deploy again"."""

import ipaddress
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


@pytest.fixture
def networked(settings, monkeypatch):
    from hakobune.platform.services.backends import get_backend

    settings.RUNTIME_BACKENDS = {"local": {"BACKEND": f"{__name__}.NetworkedDummy", "OPTIONS": {}}}
    settings.TEAM_SUBNET_POOL = "10.213.0.0/16"
    settings.TEAM_SUBNET_PREFIX = 26
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


# -- claims ------------------------------------------------------------------------


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


# -- the local runtime ------------------------------------------------------------------


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
    assert "Service gone/hello: its instances stopped and removed, with its 2 release(s), 2 build(s)" in page
    assert "Its network (10.213.0.0/26): removed, its address block free for another team" in page
    assert "protected" not in page.lower() and "Cannot delete" not in page
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(delete_url, {"post": "yes"}, follow=True)
    assert "are being stopped and removed" in answer.content.decode()
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
