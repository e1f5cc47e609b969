"""The team-network isolation rules, against an iptables of the test's own
(the real one is exercised by tests/integration/test_isolation.py)."""

import subprocess

import pytest

from hakobune.runtime.firewall import (
    FORWARD_CHAIN,
    INPUT_CHAIN,
    Firewall,
    FirewallError,
    bridge_of,
    forward_rules,
    host_resolvers,
    input_rules,
)


class FakeIptables:
    """The filter table as lists of argument lists, answering the commands
    firewall.py sends, and recording each command."""

    def __init__(self):
        self.chains = {"INPUT": [["-j", "ufw-before-input"]], "FORWARD": [], "DOCKER-USER": [["-j", "RETURN"]]}
        self.commands = []

    def __call__(self, command, **kwargs):
        assert isinstance(command, list) and command[:5] == ["iptables", "-w", "5", "-t", "filter"]
        self.commands.append(command)
        args = [word for word in command[5:] if word != "-n"]
        op, chain, *rule = args
        ok = True
        if op == "-L":
            ok = chain in self.chains
        elif op == "-N":
            ok = chain not in self.chains
            self.chains.setdefault(chain, [])
        elif op == "-C":
            ok = rule in self.chains.get(chain, [])
        elif op == "-A":
            self.chains[chain].append(rule)
        elif op == "-I":
            self.chains[chain].insert(int(rule[0]) - 1, rule[1:])
        elif op == "-D":
            ok = rule in self.chains[chain]
            if ok:
                self.chains[chain].remove(rule)
        elif op == "-S":
            ok = chain in self.chains
            lines = [" ".join(["-A", chain, *(f'"{w}"' if w.startswith("hakobune:") else w for w in r)])
                     for r in self.chains.get(chain, [])]
            return subprocess.CompletedProcess(command, 0 if ok else 1, "\n".join(lines), "")
        return subprocess.CompletedProcess(command, 0 if ok else 1, "", "" if ok else "iptables: Bad rule.")


@pytest.fixture
def iptables():
    return FakeIptables()


def test_a_team_bridge_is_cut_off_from_the_host_other_bridges_private_ranges_and_the_metadata_address(iptables):
    firewall = Firewall(run=iptables, resolvers=("10.255.255.53",))
    assert firewall.apply("br-0123456789ab", allow=("10.20.0.0/16",)) is True

    # Jumps first in INPUT and DOCKER-USER, before the host's own rules and Docker's RETURN.
    assert iptables.chains["INPUT"][0] == ["-j", INPUT_CHAIN]
    assert iptables.chains["DOCKER-USER"] == [["-j", FORWARD_CHAIN], ["-j", "RETURN"]]
    tag = ["-m", "comment", "--comment", "hakobune:br-0123456789ab"]
    assert iptables.chains[INPUT_CHAIN] == [
        ["-i", "br-0123456789ab", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tag, "-j", "RETURN"],
        ["-i", "br-0123456789ab", *tag, "-j", "DROP"],
    ]
    assert iptables.chains[FORWARD_CHAIN] == [
        ["-i", "br-0123456789ab", "-d", "169.254.0.0/16", *tag, "-j", "DROP"],
        ["-i", "br-0123456789ab", "-o", "br-0123456789ab", *tag, "-j", "RETURN"],
        ["-i", "br-0123456789ab", "-o", "br-+", *tag, "-j", "DROP"],
        ["-i", "br-0123456789ab", "-o", "docker0", *tag, "-j", "DROP"],
        # The host's resolver, which Docker's DNS inside the container asks.
        ["-i", "br-0123456789ab", "-d", "10.255.255.53/32", "-p", "udp", "-m", "udp", "--dport", "53", *tag,
         "-j", "RETURN"],
        ["-i", "br-0123456789ab", "-d", "10.255.255.53/32", "-p", "tcp", "-m", "tcp", "--dport", "53", *tag,
         "-j", "RETURN"],
        # What an administrator allowed this team, then every private range dropped.
        ["-i", "br-0123456789ab", "-d", "10.20.0.0/16", *tag, "-j", "RETURN"],
        ["-i", "br-0123456789ab", "-d", "10.0.0.0/8", *tag, "-j", "DROP"],
        ["-i", "br-0123456789ab", "-d", "172.16.0.0/12", *tag, "-j", "DROP"],
        ["-i", "br-0123456789ab", "-d", "192.168.0.0/16", *tag, "-j", "DROP"],
        ["-i", "br-0123456789ab", "-d", "100.64.0.0/10", *tag, "-j", "DROP"],
    ]
    # Only drops and returns: nothing here ever accepts traffic the host would refuse.
    rules = iptables.chains[INPUT_CHAIN] + iptables.chains[FORWARD_CHAIN]
    assert {rule[-1] for rule in rules} == {"DROP", "RETURN"}


def test_applying_twice_checks_and_adds_nothing(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-aaaaaaaaaaaa")
    before = {chain: list(rules) for chain, rules in iptables.chains.items()}
    iptables.commands.clear()

    assert firewall.apply("br-aaaaaaaaaaaa") is False
    assert iptables.chains == before
    assert {command[5] for command in iptables.commands} <= {"-n", "-C", "-S"}  # it only reads


def test_two_teams_each_get_their_own_rules(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-aaaaaaaaaaaa")
    firewall.apply("br-bbbbbbbbbbbb")
    assert iptables.chains["INPUT"].count(["-j", INPUT_CHAIN]) == 1
    assert len(iptables.chains[FORWARD_CHAIN]) == 16 and len(iptables.chains[INPUT_CHAIN]) == 4
    assert firewall.bridges() == {"br-aaaaaaaaaaaa", "br-bbbbbbbbbbbb"}


def test_a_partly_applied_group_is_redone_whole_so_no_drop_comes_before_its_return(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    iptables.chains[FORWARD_CHAIN] = [forward_rules("br-aaaaaaaaaaaa")[2]]  # only the DROP to br-+
    iptables.chains[INPUT_CHAIN] = [input_rules("br-aaaaaaaaaaaa")[1]]  # only the DROP
    iptables.chains["INPUT"].insert(0, ["-j", INPUT_CHAIN])
    iptables.chains["DOCKER-USER"].insert(0, ["-j", FORWARD_CHAIN])

    assert firewall.apply("br-aaaaaaaaaaaa") is True
    assert iptables.chains[FORWARD_CHAIN] == forward_rules("br-aaaaaaaaaaaa")
    assert iptables.chains[INPUT_CHAIN] == input_rules("br-aaaaaaaaaaaa")


def test_sync_applies_the_live_bridges_and_prunes_only_the_rules_of_removed_ones(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-aaaaaaaaaaaa")
    firewall.apply("br-gonegonegone")

    firewall.apply("br-otherinstanc")  # another Hakobune's team on this host
    on_the_host = {"br-aaaaaaaaaaaa", "br-cccccccccccc", "br-otherinstanc", "docker0"}

    firewall.sync({"br-aaaaaaaaaaaa": (), "br-cccccccccccc": ()}, lambda: on_the_host)
    assert firewall.bridges() == {"br-aaaaaaaaaaaa", "br-cccccccccccc", "br-otherinstanc"}
    assert not any("br-gonegonegone" in rule for rule in iptables.chains[FORWARD_CHAIN] + iptables.chains[INPUT_CHAIN])


@pytest.mark.parametrize("name", ["", "br-x; rm -rf /", "a-bridge-name-too-long", "-j ACCEPT"])
def test_only_an_interface_name_reaches_iptables(iptables, name):
    with pytest.raises(FirewallError):
        Firewall(run=iptables, resolvers=()).apply(name)
    assert iptables.commands == []


def test_a_failing_iptables_is_an_error_with_its_words(iptables):
    def refuses(command, **kwargs):
        if command[5] in ("-I", "-A"):
            return subprocess.CompletedProcess(command, 4, "", "iptables v1.8.9: can't initialize iptables table")
        return iptables(command, **kwargs)

    with pytest.raises(FirewallError, match="can't initialize"):
        Firewall(run=refuses, resolvers=()).apply("br-aaaaaaaaaaaa")


def test_the_bridge_of_a_network_is_its_given_name_or_dockers():
    assert bridge_of({"Id": "66c46393ad1f0123", "Options": {}}) == "br-66c46393ad1f"
    assert bridge_of({"Id": "66c46393ad1f0123", "Options": {"com.docker.network.bridge.name": "hkb0"}}) == "hkb0"


def test_the_local_backend_isolates_the_team_network_it_makes(monkeypatch):
    from hakobune.runtime.docker_local import DockerLocalBackend

    applied = []

    class Network:
        name = "hakobune-team-acme"
        attrs = {"Id": "0123456789abcdef", "Options": {}}

    class Networks:
        def list(self, names=None, filters=None):
            return []

        def create(self, name, **kwargs):
            return Network()

    backend = DockerLocalBackend("local")
    monkeypatch.setattr(backend, "_client", type("Client", (), {"networks": Networks()})())
    monkeypatch.setattr(backend.firewall, "apply", lambda bridge, allow=(): applied.append((bridge, allow)))
    assert backend._ensure_team_network("acme", allow=("10.20.0.0/16",)).name == "hakobune-team-acme"
    assert applied == [("br-0123456789ab", ("10.20.0.0/16",))]


def test_prune_removes_only_the_rules_of_bridges_that_are_gone(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-aaaaaaaaaaaa")
    firewall.apply("br-gonegonegone")
    assert firewall.prune(lambda: {"br-aaaaaaaaaaaa", "docker0"}) == {"br-gonegonegone"}
    assert firewall.bridges() == {"br-aaaaaaaaaaaa"}


def test_a_changed_allow_list_replaces_the_group_without_a_moment_unfiltered(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-aaaaaaaaaaaa", allow=("10.20.0.0/16",))
    iptables.commands.clear()

    assert firewall.apply("br-aaaaaaaaaaaa", allow=("192.168.50.0/24",)) is True
    assert iptables.chains[FORWARD_CHAIN] == forward_rules("br-aaaaaaaaaaaa", allow=("192.168.50.0/24",))
    # The new group went in before the old one came out.
    ops = [command[5] for command in iptables.commands if command[5] in ("-A", "-D")]
    assert ops == ["-A"] * 9 + ["-D"] * 9
    assert firewall.apply("br-aaaaaaaaaaaa", allow=("192.168.50.0/24",)) is False


@pytest.mark.parametrize(("entry", "words"), [
    ("169.254.169.254", "link-local"),
    ("127.0.0.0/8", "loopback"),
    ("0.0.0.0/0", "wider than a /8"),
    ("0.0.0.0/8", "loopback, link-local"),
    ("10.0.0.0/7", "wider than a /8"),
    ("fd00::/8", "not an IPv4 network"),
    ("db.example.com", "does not appear to be"),
])
def test_an_allow_list_never_opens_the_metadata_address_or_the_host(iptables, entry, words):
    with pytest.raises(FirewallError, match=words):
        Firewall(run=iptables, resolvers=()).apply("br-aaaaaaaaaaaa", allow=(entry,))
    assert not iptables.commands


def test_the_host_resolvers_are_read_from_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# generated\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver fd00::53\n"
                    "nameserver 10.255.255.53\nsearch example\n")
    assert host_resolvers(str(conf)) == ("10.255.255.53",)
    assert host_resolvers(str(tmp_path / "missing")) == ()


def test_removed_instances_take_their_anonymous_volumes_with_them():
    """An image's VOLUME becomes an anonymous volume on the host's disk; a
    removed instance must not leave it behind."""
    from hakobune.runtime.docker_local import DockerLocalBackend

    removed = []

    class Container:
        name = "hakobune-acme-hello-v1-0-abc"

        def remove(self, **kwargs):
            removed.append(kwargs)

    DockerLocalBackend("local")._remove([Container()])
    assert removed == [{"force": True, "v": True}]
