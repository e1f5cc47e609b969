"""Network isolation of the local runtime, in the host's iptables.

Docker puts each team on its own bridge and NATs it to the internet; left
alone it still lets a container open connections to the host itself (the
bridge's gateway address reaches anything listening on 0.0.0.0: Redis,
PostgreSQL, the portal, Caddy's admin API) and, on a cloud VM, to the
metadata server at 169.254.169.254. Isolation is the same for every team
bridge, so it lives in shared chains, and each bridge adds only the rules
that name it (three, plus one per network on its allow-list):

    INPUT      -j HAKOBUNE-INPUT                         (once, first)
    HAKOBUNE-INPUT
      -i <bridge> -j HAKOBUNE-TEAM-IN                    one per bridge
    HAKOBUNE-TEAM-IN                                     shared
      -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
      -j DROP
    DOCKER-USER -j HAKOBUNE-FORWARD                      (once, first)
    FORWARD     -j HAKOBUNE-FORWARD                      (once, first: see
                                                          _ensure_first_in_forward)
    HAKOBUNE-FORWARD
      -i <bridge> -o <bridge> -j RETURN                  its own team
      -i <bridge> -j HAKOBUNE-TEAM-OUT                   one pair per bridge
    HAKOBUNE-TEAM-OUT                                    shared
      -d 169.254.0.0/16 -j DROP                          link-local: cloud metadata
      -o br-+ -j DROP                                    other teams, other networks
      -o docker0 -j DROP
      -d <resolver> -p udp --dport 53 -j RETURN          the host's DNS
      -d <resolver> -p tcp --dport 53 -j RETURN          resolvers
      -d 10.0.0.0/8 -j HAKOBUNE-PRIVATE                  private ranges: the LAN,
      -d 172.16.0.0/12 -j HAKOBUNE-PRIVATE               the cloud's VPC, a company
      -d 192.168.0.0/16 -j HAKOBUNE-PRIVATE              network behind the host,
      -d 100.64.0.0/10 -j HAKOBUNE-PRIVATE               other teams' subnets
    HAKOBUNE-PRIVATE
      -i <bridge> -d <allowed network> -j RETURN         an administrator's allow-list
      -j DROP                                            (last)

So a service reaches its own team's containers and the internet (through
Docker's NAT; DNS goes through Docker's resolver inside the container, which
asks the host's resolvers), the networks an administrator allowed its team,
and nothing of the host, of any other Docker network or of a private range
(team subnets come from TEAM_SUBNET_POOL, which lies in one of them).
Team networks have no IPv6 (they are made without it and their containers
turn it off), so there is no path to filter there. The replies to
connections the host opens (Caddy and the health checks dialing the published
port on 127.0.0.1) are ESTABLISHED and pass. RETURN, never ACCEPT: these rules
only ever take away, and the host's own rules still decide the rest. (An
allowed packet RETURNs from HAKOBUNE-PRIVATE to the rest of HAKOBUNE-TEAM-OUT,
where no rule matches it again, and so back to Docker's chains.)

With 1,000 teams this is about 3,000 rules (the earlier layout, every rule per
bridge, was 12 a bridge), and changes are made by reading the chains once and
writing one `iptables-restore --noflush` batch: applied atomically, so a
bridge is never without its rules, and the reconciler's pass over every bridge
is a few reads and one write instead of a dozen commands (each reading the
whole chain) per bridge.

Every per-bridge rule carries a comment naming its bridge, so that the rules
of removed networks can be pruned (and the twelve rules a bridge had in the
earlier layout are replaced by its new ones on its next apply)."""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import shlex
import shutil
import subprocess
from contextlib import contextmanager

log = logging.getLogger(__name__)

INPUT_CHAIN = "HAKOBUNE-INPUT"
FORWARD_CHAIN = "HAKOBUNE-FORWARD"
TEAM_IN_CHAIN = "HAKOBUNE-TEAM-IN"
TEAM_OUT_CHAIN = "HAKOBUNE-TEAM-OUT"
PRIVATE_CHAIN = "HAKOBUNE-PRIVATE"
PER_BRIDGE_CHAINS = (INPUT_CHAIN, FORWARD_CHAIN, PRIVATE_CHAIN)
METADATA_RANGE = "169.254.0.0/16"
NEVER_ALLOWED = ("0.0.0.0/8", "127.0.0.0/8", METADATA_RANGE, "224.0.0.0/4", "240.0.0.0/4")
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
COMMENT_PREFIX = "hakobune:"
LOCK_DIR = os.environ.get("HAKOBUNE_LOCK_DIR", "/run/lock" if os.path.isdir("/run/lock") else "/tmp")
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"


class FirewallError(Exception):
    pass


def bridge_of(network) -> str:
    """The host interface of a Docker bridge network (a docker SDK Network,
    or its attrs): the name it was given, else Docker's `br-<id[:12]>`."""
    attrs = getattr(network, "attrs", network)
    name = (attrs.get("Options") or {}).get(BRIDGE_NAME_OPTION)
    return name or f"br-{attrs['Id'][:12]}"


def _comment(bridge: str) -> list[str]:
    return ["-m", "comment", "--comment", f"{COMMENT_PREFIX}{bridge}"]


# Rules are written as `iptables -S` prints them (-d before -i, matches after),
# so that what is read back compares equal to what is wanted.

def team_in_rules() -> list[list[str]]:
    return [["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"], ["-j", "DROP"]]


def team_out_rules(resolvers: tuple[str, ...] = ()) -> list[list[str]]:
    return [
        ["-d", METADATA_RANGE, "-j", "DROP"],
        ["-o", "br-+", "-j", "DROP"],
        ["-o", "docker0", "-j", "DROP"],
        *(["-d", f"{resolver}/32", "-p", protocol, "-m", protocol, "--dport", "53", "-j", "RETURN"]
          for resolver in resolvers for protocol in ("udp", "tcp")),
        *(["-d", network, "-j", PRIVATE_CHAIN] for network in PRIVATE_RANGES),
    ]


def input_rules(bridge: str) -> list[list[str]]:
    """The bridge's rules in HAKOBUNE-INPUT."""
    return [["-i", bridge, *_comment(bridge), "-j", TEAM_IN_CHAIN]]


def forward_rules(bridge: str) -> list[list[str]]:
    """The bridge's rules in HAKOBUNE-FORWARD, in this order."""
    tag = _comment(bridge)
    return [["-i", bridge, "-o", bridge, *tag, "-j", "RETURN"], ["-i", bridge, *tag, "-j", TEAM_OUT_CHAIN]]


def private_rules(bridge: str, allow: tuple[str, ...] = ()) -> list[list[str]]:
    """The bridge's rules in HAKOBUNE-PRIVATE: its allow-list."""
    return [["-d", network, "-i", bridge, *_comment(bridge), "-j", "RETURN"] for network in allow]


def host_resolvers(resolv_conf: str = "/etc/resolv.conf") -> tuple[str, ...]:
    """The IPv4 name servers this host uses (not loopback ones: Docker does
    not send a container's queries to the host's loopback)."""
    found = []
    try:
        lines = open(resolv_conf, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        return ()
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                address = ipaddress.ip_address(words[1])
            except ValueError:
                continue
            if address.version == 4 and not address.is_loopback:
                found.append(str(address))
    return tuple(dict.fromkeys(found))


def allowed_network(text: str) -> str:
    """An allow-list entry in one spelling (a.b.c.d/n), or ValueError saying
    why it cannot be allowed."""
    network = ipaddress.ip_network(text.strip(), strict=False)
    if network.version != 4:
        raise ValueError(f"{text} is not an IPv4 network; team networks have no IPv6")
    if network.prefixlen < 8:
        raise ValueError(f"{text} is wider than a /8; allow the networks the team needs")
    if any(network.overlaps(ipaddress.ip_network(never)) for never in NEVER_ALLOWED):
        raise ValueError(f"{text} is loopback, link-local (cloud metadata), multicast or reserved; it is never allowed")
    return str(network)


def _valid_bridge(bridge: str) -> str:
    if not bridge or len(bridge) > 15 or not all(c.isalnum() or c in "-_." for c in bridge):
        raise FirewallError(f"not a bridge interface name: {bridge!r}")
    return bridge


def _tag_of(rule: list[str]) -> str | None:
    """The bridge a rule names in its comment, or None."""
    if "--comment" in rule:
        position = rule.index("--comment") + 1
        if position < len(rule) and rule[position].startswith(COMMENT_PREFIX):
            return rule[position][len(COMMENT_PREFIX):]
    return None


def _line(op: str, chain: str, rule: list[str]) -> str:
    return " ".join([op, chain, *(shlex.quote(word) for word in rule)])


class Firewall:
    def __init__(self, iptables: str = "iptables", run=subprocess.run, *, resolvers: tuple[str, ...] | None = None):
        self.iptables = iptables
        self._run = run
        self.resolvers = host_resolvers() if resolvers is None else tuple(resolvers)

    # -- iptables -------------------------------------------------------------

    def _call(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [self.iptables, "-w", "5", "-t", "filter", *args]
        try:
            result = self._run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"could not run {self.iptables}: {exc}") from exc
        if check and result.returncode != 0:
            raise FirewallError(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()}")
        return result

    def _restore(self, lines: list[str]) -> None:
        """One batch of changes to the filter table, applied at once or not at
        all (`iptables-restore --noflush`: the rest of the table is kept)."""
        if not lines:
            return
        command = [f"{self.iptables}-restore", "-w", "5", "--noflush"]
        text = "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"
        try:
            result = self._run(command, input=text, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"could not run {command[0]}: {exc}") from exc
        if result.returncode != 0:
            raise FirewallError(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()}")

    def _read(self) -> dict[str, list[list[str]]]:
        """The filter table, chain: rules as argument lists (without `-A
        chain`), for Hakobune's chains, INPUT and DOCKER-USER; other chains
        are listed without their rules. One read of the whole table: with
        iptables-nft each command costs about as much as reading all of it
        (bench/RESULTS.md, "Room for many teams")."""
        result = self._call("-S")
        table: dict[str, list[list[str]]] = {}
        for line in result.stdout.splitlines():
            kind, _, rest = line.partition(" ")
            chain, _, rule = rest.partition(" ")
            if kind in ("-P", "-N"):
                table.setdefault(chain, [])
            elif kind == "-A":
                rules = table.setdefault(chain, [])
                # Docker's thousands of rules are not split into words: of
                # FORWARD, only its first rule and Hakobune's jumps.
                if chain.startswith("HAKOBUNE-") or chain in ("INPUT", "DOCKER-USER"):
                    rules.append(shlex.split(rule))
                elif chain == "FORWARD" and (not rules or rule == f"-j {FORWARD_CHAIN}"):
                    rules.append(shlex.split(rule))
        return table

    def _ensure_base(self) -> dict[str, list[list[str]]]:
        """The chains, the shared rules, and the jumps from INPUT and
        DOCKER-USER, first: the table is read once, and only what differs is
        written. Returns the per-bridge chains' rules as read (chain: rules)."""
        table = self._read()
        for parent in ("INPUT", "DOCKER-USER"):
            if parent not in table:
                raise FirewallError(f"the chain {parent} does not exist; is the Docker Engine running with iptables?")
        # Chains are declared first in a batch, their rules after. Declaring
        # an existing chain empties it: the shared chains are rewritten whole
        # when they differ (new resolvers), atomically.
        declare, batch = [], []
        for chain in (INPUT_CHAIN, FORWARD_CHAIN):
            if chain not in table:
                declare.append(f":{chain} - [0:0]")
        private = table.get(PRIVATE_CHAIN)
        if private is None:
            declare.append(f":{PRIVATE_CHAIN} - [0:0]")
            batch.append(_line("-A", PRIVATE_CHAIN, ["-j", "DROP"]))
        elif [rule for rule in private if _tag_of(rule) is None] != [["-j", "DROP"]] or private[-1] != ["-j", "DROP"]:
            # The allow-lists stay; one DROP, last.
            batch += [_line("-D", PRIVATE_CHAIN, rule) for rule in private if _tag_of(rule) is None]
            batch.append(_line("-A", PRIVATE_CHAIN, ["-j", "DROP"]))
        for chain, wanted in ((TEAM_IN_CHAIN, team_in_rules()), (TEAM_OUT_CHAIN, team_out_rules(self.resolvers))):
            if table.get(chain) != wanted:
                declare.append(f":{chain} - [0:0]")
                batch += [_line("-A", chain, rule) for rule in wanted]
        self._restore(declare + batch)
        # The jumps after the chains exist (a batch cannot jump to a chain it
        # declares in the same breath on every iptables).
        for chain, parent in ((INPUT_CHAIN, "INPUT"), (FORWARD_CHAIN, "DOCKER-USER")):
            if ["-j", chain] not in table[parent]:
                self._call("-I", parent, "1", "-j", chain)
        self._ensure_first_in_forward(table.get("FORWARD"))
        return {chain: table.get(chain) or [] for chain in PER_BRIDGE_CHAINS}

    def _ensure_first_in_forward(self, forward: list[list[str]] | None) -> None:
        """A jump to HAKOBUNE-FORWARD first in FORWARD itself, beside the one
        in DOCKER-USER: each time Docker makes a network it deletes its jump
        to DOCKER-USER and inserts it again at the top, and in between (tens
        of milliseconds with many networks) forwarded traffic of every bridge
        meets Docker's ACCEPT rules without Hakobune's. Docker inserts a new
        network's rules above this jump too; they match only that bridge,
        which is isolated (and this jump put back on top) before anything
        runs on it. Moved in one atomic batch, so there is no moment without it."""
        if forward is None:
            return
        jump = ["-j", FORWARD_CHAIN]
        copies = sum(rule == jump for rule in forward)
        if forward and forward[0] == jump and copies == 1:
            return
        self._restore([_line("-D", "FORWARD", jump)] * copies + [_line("-I", "FORWARD", ["1", *jump])])

    def _changes(self, current: dict[str, list[list[str]]], wanted: dict[str, dict[str, list[list[str]]]],
                 *, only: set[str] | None = None) -> tuple[list[str], set[str]]:
        """The batch lines that turn the per-bridge rules `current` (chain:
        rules) into `wanted` (bridge: chain: rules) for the bridges in
        `only` (None: every bridge `wanted` names, and no other is touched),
        and the bridges they change. One pass over the rules read."""
        bridges = set(wanted) if only is None else only
        lines, changed = [], set()
        for chain in PER_BRIDGE_CHAINS:
            have: dict[str, list[list[str]]] = {}
            for rule in current.get(chain) or []:
                bridge = _tag_of(rule)
                if bridge is not None:
                    have.setdefault(bridge, []).append(rule)
            for bridge in sorted(bridges):
                want = wanted.get(bridge, {}).get(chain, [])
                if have.get(bridge, []) == want:
                    continue
                changed.add(bridge)
                # Removed and written again whole, in one atomic batch: the
                # order within a group (RETURN before the jump) always holds.
                lines += [_line("-D", chain, rule) for rule in have.get(bridge, [])]
                if chain == PRIVATE_CHAIN:  # before the chain's final DROP
                    lines += [_line("-I", chain, ["1", *rule]) for rule in reversed(want)]
                else:
                    lines += [_line("-A", chain, rule) for rule in want]
        return lines, changed

    def _current(self) -> dict[str, list[list[str]]]:
        table = self._read()
        return {chain: table.get(chain) or [] for chain in PER_BRIDGE_CHAINS}

    def _wanted(self, bridge: str, allow: tuple[str, ...]) -> dict[str, list[list[str]]]:
        return {INPUT_CHAIN: input_rules(bridge), FORWARD_CHAIN: forward_rules(bridge),
                PRIVATE_CHAIN: private_rules(bridge, allow)}

    # -- what the backend and the reconciler call ------------------------------

    def apply(self, bridge: str, *, allow: tuple[str, ...] = ()) -> bool:
        """Isolates one team bridge, letting it reach the `allow`ed networks;
        returns whether a rule changed."""
        return bool(self.apply_many({bridge: allow}))

    def apply_many(self, bridges: dict[str, tuple[str, ...]]) -> set[str]:
        """Isolates these bridges, each with its allow-list, in one batch;
        returns the bridges whose rules changed."""
        wanted = {}
        for bridge, allow in bridges.items():
            try:
                wanted[_valid_bridge(bridge)] = self._wanted(bridge, tuple(allowed_network(n) for n in allow))
            except ValueError as exc:
                raise FirewallError(str(exc)) from exc
        with _lock():
            lines, changed = self._changes(self._ensure_base(), wanted)
            self._restore(lines)
        for bridge in sorted(changed):
            log.info("isolated the team bridge %s", bridge)
        return changed

    def remove(self, bridge: str) -> None:
        self.remove_many({bridge})

    def remove_many(self, bridges: set[str]) -> None:
        if not bridges:
            return
        with _lock():
            self._restore(self._changes(self._current(), {}, only=set(bridges))[0])

    def bridges(self) -> set[str]:
        """The bridges that have rules here, read from the rules' comments."""
        return {bridge for rules in self._current().values() for rule in rules if (bridge := _tag_of(rule))}

    def rules(self, chain: str) -> list[str]:
        """`iptables -S <chain>`, one rule a line."""
        return self._call("-S", chain).stdout.splitlines()

    def prune(self, existing) -> set[str]:
        """Removes the rules of bridges that are gone. `existing` is called
        after the rules are read (a network made in between had its rules
        added after it existed, so it is listed), and returns every bridge
        on the host. Returns the bridges pruned."""
        stale = self.bridges() - set(existing())
        self.remove_many(stale)
        return stale

    def sync(self, bridges: dict[str, tuple[str, ...]], existing) -> None:
        """These bridges isolated, each with its allow-list (for the
        reconciler, after a reboot emptied iptables), and the rules of bridges
        that are gone from the host removed (see prune). Other bridges' rules
        are left alone: several Hakobune instances (a test run beside a
        running platform) share the host's iptables."""
        self.apply_many(bridges)
        self.prune(existing)


def available() -> bool:
    return shutil.which("iptables") is not None


def sync_team_networks(client, firewall: Firewall | None = None, *, label: str = "org.hakobune.managed=true") -> set[str]:
    """Applies the isolation to every Hakobune team network on this Docker
    Engine and prunes the rules of networks that are gone; returns the bridges."""
    firewall = firewall or Firewall()
    bridges = {bridge_of(network): () for network in client.networks.list(filters={"label": label})}
    firewall.sync(bridges, lambda: {bridge_of(network) for network in client.networks.list()})
    return bridges


def prune_removed_networks(client, firewall: Firewall | None = None) -> set[str]:
    """Drops the rules of bridges Docker no longer has (networks removed
    without the backend, as tests do); touches no other bridge's rules."""
    firewall = firewall or Firewall()
    return firewall.prune(lambda: {bridge_of(network) for network in client.networks.list()})


@contextmanager
def host_lock(name: str):
    """An exclusive lock of this host, across processes (a file lock)."""
    path = os.path.join(LOCK_DIR, f"hakobune-{name}.lock")
    try:
        handle = open(path, "a")
    except OSError:
        log.warning("cannot open the lock file %s; going on without it", path)
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock():
    """One process at a time checks-then-adds, so two deploys of one team
    never add a group twice."""
    return host_lock("firewall")
