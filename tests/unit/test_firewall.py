"""The team-network isolation rules, against an iptables of the test's own
(the real one is exercised by tests/integration/test_isolation.py)."""

import shlex
import subprocess

import pytest

from hakobune.runtime import firewall as firewall_module
from hakobune.runtime.firewall import (
    FORWARD_CHAIN,
    INPUT_CHAIN,
    PRIVATE_CHAIN,
    TEAM_IN_CHAIN,
    TEAM_OUT_CHAIN,
    Firewall,
    FirewallError,
    bridge_of,
    forward_rules,
    host_resolvers,
    input_rules,
    private_rules,
    team_in_rules,
    team_out_rules,
)


class FakeIptables:
    """The filter table as lists of argument lists, answering the commands
    firewall.py sends (iptables, and iptables-restore --noflush batches,
    applied whole or not at all), and recording each command."""

    def __init__(self):
        self.chains = {"INPUT": [["-j", "ufw-before-input"]], "FORWARD": [], "DOCKER-USER": [["-j", "RETURN"]]}
        self.commands = []
        self.batches = []

    def _op(self, chains, op, chain, rule):
        if op == "-N":
            ok = chain not in chains
            chains.setdefault(chain, [])
        elif op == "-C":
            ok = rule in chains.get(chain, [])
        elif op == "-A":
            ok = chain in chains
            chains[chain].append(rule)
        elif op == "-I":
            ok = chain in chains
            chains[chain].insert(int(rule[0]) - 1, rule[1:])
        elif op == "-D":
            ok = rule in chains.get(chain, [])
            if ok:
                chains[chain].remove(rule)
        else:
            raise AssertionError(op)
        return ok

    def __call__(self, command, **kwargs):
        assert isinstance(command, list)
        self.commands.append(command)
        if command[0] == "iptables-restore":
            assert command[1:] == ["-w", "5", "--noflush"]
            lines = kwargs["input"].splitlines()
            assert lines[0] == "*filter" and lines[-1] == "COMMIT"
            self.batches.append(lines[1:-1])
            chains = {chain: list(rules) for chain, rules in self.chains.items()}
            for line in lines[1:-1]:
                if line.startswith(":"):
                    chains[line[1:].split()[0]] = []
                    continue
                op, chain, *rule = shlex.split(line)
                if not self._op(chains, op, chain, rule):
                    return subprocess.CompletedProcess(command, 2, "", f"Error occurred at line: {line}")
            self.chains = chains
            return subprocess.CompletedProcess(command, 0, "", "")
        assert command[:5] == ["iptables", "-w", "5", "-t", "filter"]
        args = [word for word in command[5:] if word != "-n"]
        if args == ["-S"]:  # the whole table
            lines = [f"-P {chain} ACCEPT" if chain in ("INPUT", "FORWARD") else f"-N {chain}"
                     for chain in self.chains]
            lines += [" ".join(["-A", chain, *(f'"{w}"' if w.startswith("hakobune:") else w for w in r)])
                      for chain, rules in self.chains.items() for r in rules]
            return subprocess.CompletedProcess(command, 0, "\n".join(lines), "")
        op, chain, *rule = args
        if op == "-S":
            ok = chain in self.chains
            lines = [f"-N {chain}"] + [" ".join(["-A", chain, *(f'"{w}"' if w.startswith("hakobune:") else w for w in r)])
                                       for r in self.chains.get(chain, [])]
            return subprocess.CompletedProcess(command, 0 if ok else 1, "\n".join(lines) if ok else "", "")
        ok = self._op(self.chains, op, chain, rule)
        return subprocess.CompletedProcess(command, 0 if ok else 1, "", "" if ok else "iptables: Bad rule.")


@pytest.fixture
def iptables(monkeypatch, tmp_path):
    # A lock of the test's own: the host's is held by whatever isolates real bridges meanwhile.
    monkeypatch.setattr(firewall_module, "LOCK_DIR", str(tmp_path))
    return FakeIptables()


def test_a_team_bridge_is_cut_off_from_the_host_other_bridges_private_ranges_and_the_metadata_address(iptables):
    firewall = Firewall(run=iptables, resolvers=("10.255.255.53",))
    assert firewall.apply("br-0123456789ab", allow=("10.20.0.0/16",)) is True

    # Jumps first in INPUT and DOCKER-USER, before the host's own rules and Docker's RETURN.
    assert iptables.chains["INPUT"][0] == ["-j", INPUT_CHAIN]
    assert iptables.chains["DOCKER-USER"] == [["-j", FORWARD_CHAIN], ["-j", "RETURN"]]
    assert iptables.chains["FORWARD"] == [["-j", FORWARD_CHAIN]]
    tag = ["-m", "comment", "--comment", "hakobune:br-0123456789ab"]
    # The bridge's own rules: the host is for replies only, its team is reached, the rest is shared.
    assert iptables.chains[INPUT_CHAIN] == [["-i", "br-0123456789ab", *tag, "-j", TEAM_IN_CHAIN]]
    assert iptables.chains[TEAM_IN_CHAIN] == [
        ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
        ["-j", "DROP"],
    ]
    assert iptables.chains[FORWARD_CHAIN] == [
        ["-i", "br-0123456789ab", "-o", "br-0123456789ab", *tag, "-j", "RETURN"],
        ["-i", "br-0123456789ab", *tag, "-j", TEAM_OUT_CHAIN],
    ]
    assert iptables.chains[TEAM_OUT_CHAIN] == [
        ["-d", "169.254.0.0/16", "-j", "DROP"],
        ["-o", "br-+", "-j", "DROP"],
        ["-o", "docker0", "-j", "DROP"],
        # The host's resolver, which Docker's DNS inside the container asks.
        ["-d", "10.255.255.53/32", "-p", "udp", "-m", "udp", "--dport", "53", "-j", "RETURN"],
        ["-d", "10.255.255.53/32", "-p", "tcp", "-m", "tcp", "--dport", "53", "-j", "RETURN"],
        ["-d", "10.0.0.0/8", "-j", PRIVATE_CHAIN],
        ["-d", "172.16.0.0/12", "-j", PRIVATE_CHAIN],
        ["-d", "192.168.0.0/16", "-j", PRIVATE_CHAIN],
        ["-d", "100.64.0.0/10", "-j", PRIVATE_CHAIN],
    ]
    # What an administrator allowed this team, then every private range dropped.
    assert iptables.chains[PRIVATE_CHAIN] == [
        ["-d", "10.20.0.0/16", "-i", "br-0123456789ab", *tag, "-j", "RETURN"],
        ["-j", "DROP"],
    ]
    # Only drops, returns and jumps between Hakobune's chains: nothing here ever accepts.
    ours = [rule for chain, rules in iptables.chains.items() if chain.startswith("HAKOBUNE-") for rule in rules]
    assert {rule[-1] for rule in ours} <= {"DROP", "RETURN", TEAM_IN_CHAIN, TEAM_OUT_CHAIN, PRIVATE_CHAIN}


def test_applying_twice_only_reads(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-aaaaaaaaaaaa")
    before = {chain: list(rules) for chain, rules in iptables.chains.items()}
    iptables.commands.clear()

    assert firewall.apply("br-aaaaaaaaaaaa") is False
    assert iptables.chains == before
    assert [command[5:] for command in iptables.commands] == [["-S"]]  # one read of the table, nothing written


def test_each_team_adds_three_rules_whatever_the_number_of_teams(iptables):
    firewall = Firewall(run=iptables, resolvers=("10.255.255.53",))
    firewall.apply("br-aaaaaaaaaaaa")
    shared = sum(len(rules) for rules in iptables.chains.values())
    firewall.apply_many({f"br-{n:012x}": () for n in range(200)})
    assert iptables.chains["INPUT"].count(["-j", INPUT_CHAIN]) == 1
    assert sum(len(rules) for rules in iptables.chains.values()) == shared + 200 * 3
    assert len(firewall.bridges()) == 201


def test_the_reconciler_isolates_every_bridge_in_a_few_reads_and_one_batch(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    bridges = {f"br-{n:012x}": () for n in range(300)}
    firewall.sync(bridges, lambda: set(bridges))
    iptables.commands.clear()
    iptables.batches.clear()
    del iptables.chains[FORWARD_CHAIN][:]  # as if flushed: every bridge lost its forward rules

    firewall.sync(bridges, lambda: set(bridges))
    assert len(iptables.commands) <= 4  # not per bridge: reads of the table and one batch
    assert len(iptables.batches) == 1
    assert len(iptables.chains[FORWARD_CHAIN]) == 600


def test_a_partly_applied_group_is_redone_whole_so_no_jump_comes_before_its_return(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-bbbbbbbbbbbb")
    iptables.chains[FORWARD_CHAIN].append(forward_rules("br-aaaaaaaaaaaa")[1])  # only the jump out

    assert firewall.apply("br-aaaaaaaaaaaa") is True
    assert iptables.chains[FORWARD_CHAIN] == forward_rules("br-bbbbbbbbbbbb") + forward_rules("br-aaaaaaaaaaaa")
    assert iptables.chains[INPUT_CHAIN] == input_rules("br-bbbbbbbbbbbb") + input_rules("br-aaaaaaaaaaaa")


def test_the_rules_of_the_earlier_layout_are_replaced_on_the_next_apply(iptables):
    """Twelve rules a bridge, each naming it, as Hakobune wrote them before."""
    tag = ["-m", "comment", "--comment", "hakobune:br-aaaaaaaaaaaa"]
    iptables.chains[INPUT_CHAIN] = [["-i", "br-aaaaaaaaaaaa", *tag, "-j", "DROP"]]
    iptables.chains[FORWARD_CHAIN] = [["-d", net, "-i", "br-aaaaaaaaaaaa", *tag, "-j", "DROP"]
                                      for net in ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12")]
    firewall = Firewall(run=iptables, resolvers=())
    assert firewall.apply("br-aaaaaaaaaaaa") is True
    assert iptables.chains[INPUT_CHAIN] == input_rules("br-aaaaaaaaaaaa")
    assert iptables.chains[FORWARD_CHAIN] == forward_rules("br-aaaaaaaaaaaa")


def test_changed_resolvers_rewrite_the_shared_chain_and_keep_the_teams_rules(iptables):
    Firewall(run=iptables, resolvers=("10.255.255.53",)).apply("br-aaaaaaaaaaaa", allow=("10.20.0.0/16",))
    Firewall(run=iptables, resolvers=("10.9.9.9",)).apply("br-aaaaaaaaaaaa", allow=("10.20.0.0/16",))
    assert iptables.chains[TEAM_OUT_CHAIN] == team_out_rules(("10.9.9.9",))
    assert iptables.chains[TEAM_IN_CHAIN] == team_in_rules()
    assert iptables.chains[PRIVATE_CHAIN] == private_rules("br-aaaaaaaaaaaa", ("10.20.0.0/16",)) + [["-j", "DROP"]]


def test_sync_applies_the_live_bridges_and_prunes_only_the_rules_of_removed_ones(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-aaaaaaaaaaaa")
    firewall.apply("br-gonegonegone", allow=("10.20.0.0/16",))

    firewall.apply("br-otherinstanc")  # another Hakobune's team on this host
    on_the_host = {"br-aaaaaaaaaaaa", "br-cccccccccccc", "br-otherinstanc", "docker0"}

    firewall.sync({"br-aaaaaaaaaaaa": (), "br-cccccccccccc": ()}, lambda: on_the_host)
    assert firewall.bridges() == {"br-aaaaaaaaaaaa", "br-cccccccccccc", "br-otherinstanc"}
    assert not any("hakobune:br-gonegonegone" in rule for rules in iptables.chains.values() for rule in rules)
    assert iptables.chains[PRIVATE_CHAIN] == [["-j", "DROP"]]


@pytest.mark.parametrize("name", ["", "br-x; rm -rf /", "a-bridge-name-too-long", "-j ACCEPT"])
def test_only_an_interface_name_reaches_iptables(iptables, name):
    with pytest.raises(FirewallError):
        Firewall(run=iptables, resolvers=()).apply(name)
    assert iptables.commands == []


def test_a_failing_iptables_is_an_error_with_its_words(iptables):
    def refuses(command, **kwargs):
        if command[0] == "iptables-restore" or command[5] in ("-I", "-A"):
            return subprocess.CompletedProcess(command, 4, "", "iptables v1.8.9: can't initialize iptables table")
        return iptables(command, **kwargs)

    with pytest.raises(FirewallError, match="can't initialize"):
        Firewall(run=refuses, resolvers=()).apply("br-aaaaaaaaaaaa")


def test_prune_removes_only_the_rules_of_bridges_that_are_gone(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-aaaaaaaaaaaa")
    firewall.apply("br-gonegonegone")
    assert firewall.prune(lambda: {"br-aaaaaaaaaaaa", "docker0"}) == {"br-gonegonegone"}
    assert firewall.bridges() == {"br-aaaaaaaaaaaa"}


def test_a_changed_allow_list_is_replaced_in_one_batch_before_the_final_drop(iptables):
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-aaaaaaaaaaaa", allow=("10.20.0.0/16",))
    firewall.apply("br-bbbbbbbbbbbb", allow=("10.30.0.0/16",))
    iptables.batches.clear()

    assert firewall.apply("br-aaaaaaaaaaaa", allow=("192.168.50.0/24", "10.21.0.0/16")) is True
    assert iptables.chains[PRIVATE_CHAIN][-1] == ["-j", "DROP"]
    assert sorted(iptables.chains[PRIVATE_CHAIN][:-1]) == sorted(
        private_rules("br-aaaaaaaaaaaa", ("192.168.50.0/24", "10.21.0.0/16")) + private_rules("br-bbbbbbbbbbbb", ("10.30.0.0/16",))
    )
    assert len(iptables.batches) == 1  # the old allow-list out and the new in, at once
    assert firewall.apply("br-aaaaaaaaaaaa", allow=("192.168.50.0/24", "10.21.0.0/16")) is False


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


def test_the_jump_in_forward_goes_back_on_top_after_docker_put_a_new_networks_rules_above_it(iptables):
    """Docker deletes and re-inserts its jump to DOCKER-USER for every network
    it makes; Hakobune's own jump first in FORWARD closes that gap."""
    firewall = Firewall(run=iptables, resolvers=())
    firewall.apply("br-aaaaaaaaaaaa")
    docker_rules = [["-i", "br-newnewnewnew", "!", "-o", "br-newnewnewnew", "-j", "ACCEPT"], ["-j", "DOCKER-USER"]]
    iptables.chains["FORWARD"][0:0] = docker_rules
    iptables.batches.clear()

    firewall.apply("br-newnewnewnew")
    assert iptables.chains["FORWARD"] == [["-j", FORWARD_CHAIN], *docker_rules]
    # Moved in one atomic batch: never a moment without it.
    assert ["-D FORWARD -j HAKOBUNE-FORWARD", "-I FORWARD 1 -j HAKOBUNE-FORWARD"] in iptables.batches
