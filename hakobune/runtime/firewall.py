"""Network isolation of the local runtime, in the host's iptables.

Docker puts each team on its own bridge and NATs it to the internet; left
alone it still lets a container open connections to the host itself (the
bridge's gateway address reaches anything listening on 0.0.0.0: Redis,
PostgreSQL, the portal, Caddy's admin API) and, on a cloud VM, to the
metadata server at 169.254.169.254. For each team bridge this module adds:

    INPUT      -j HAKOBUNE-INPUT                         (once, first)
    HAKOBUNE-INPUT
      -i <bridge> -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
      -i <bridge> -j DROP
    DOCKER-USER -j HAKOBUNE-FORWARD                      (once, first)
    HAKOBUNE-FORWARD
      -i <bridge> -d 169.254.0.0/16 -j DROP              link-local: cloud metadata
      -i <bridge> -o <bridge> -j RETURN                  its own team
      -i <bridge> -o br-+ -j DROP                        other teams
      -i <bridge> -o docker0 -j DROP
      -i <bridge> -d <resolver> -p udp --dport 53 -j RETURN   the host's DNS
      -i <bridge> -d <resolver> -p tcp --dport 53 -j RETURN   resolvers
      -i <bridge> -d <allowed network> -j RETURN         an administrator's allow-list
      -i <bridge> -d 10.0.0.0/8 -j DROP                  private ranges: the LAN,
      -i <bridge> -d 172.16.0.0/12 -j DROP               the cloud's VPC, a company
      -i <bridge> -d 192.168.0.0/16 -j DROP              network behind the host
      -i <bridge> -d 100.64.0.0/10 -j DROP

So a service reaches its own team's containers and the internet (through
Docker's NAT; DNS goes through Docker's resolver inside the container, which
asks the host's resolvers), the networks an administrator allowed its team,
and nothing of the host, of any other Docker network or of a private range.
Team networks have no IPv6 (they are made without it and their containers
turn it off), so there is no IPv6 path to filter. The replies to
connections the host opens (Caddy and the health checks dialing the published
port on 127.0.0.1) are ESTABLISHED and pass. RETURN, never ACCEPT: these rules
only ever take away, and the host's own rules still decide the rest.

Every rule carries a comment naming its bridge, so that the rules of removed
networks can be pruned. Commands are argument lists; each rule is checked
with `iptables -C` before it is added, so applying twice changes nothing."""

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


def input_rules(bridge: str) -> list[list[str]]:
    tag = _comment(bridge)
    return [
        ["-i", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tag, "-j", "RETURN"],
        ["-i", bridge, *tag, "-j", "DROP"],
    ]


def forward_rules(bridge: str, *, allow: tuple[str, ...] = (), resolvers: tuple[str, ...] = ()) -> list[list[str]]:
    tag = _comment(bridge)
    return [
        ["-i", bridge, "-d", METADATA_RANGE, *tag, "-j", "DROP"],
        ["-i", bridge, "-o", bridge, *tag, "-j", "RETURN"],
        ["-i", bridge, "-o", "br-+", *tag, "-j", "DROP"],
        ["-i", bridge, "-o", "docker0", *tag, "-j", "DROP"],
        *(["-i", bridge, "-d", f"{resolver}/32", "-p", protocol, "-m", protocol, "--dport", "53", *tag, "-j", "RETURN"]
          for resolver in resolvers for protocol in ("udp", "tcp")),
        *(["-i", bridge, "-d", network, *tag, "-j", "RETURN"] for network in allow),
        *(["-i", bridge, "-d", network, *tag, "-j", "DROP"] for network in PRIVATE_RANGES),
    ]


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

    def _exists(self, chain: str, rule: list[str]) -> bool:
        return self._call("-C", chain, *rule, check=False).returncode == 0

    def _ensure_chain(self, chain: str, parent: str) -> None:
        if self._call("-n", "-L", chain, check=False).returncode != 0:
            created = self._call("-N", chain, check=False)
            if created.returncode != 0 and self._call("-n", "-L", chain, check=False).returncode != 0:
                raise FirewallError(f"could not create the chain {chain}: {created.stderr.strip()}")
        if self._call("-n", "-L", parent, check=False).returncode != 0:
            raise FirewallError(f"the chain {parent} does not exist; is the Docker Engine running with iptables?")
        if not self._exists(parent, ["-j", chain]):
            self._call("-I", parent, "1", "-j", chain)

    def _ensure_group(self, chain: str, rules: list[list[str]]) -> bool:
        """Makes the rules present, in this order; returns whether it changed
        anything. A partial group (interrupted earlier) is removed and added
        again whole, so that a DROP never comes before its RETURN."""
        present = [self._exists(chain, rule) for rule in rules]
        if all(present):
            return False
        for rule, there in zip(rules, present):
            if there:
                self._call("-D", chain, *rule)
        for rule in rules:
            self._call("-A", chain, *rule)
        return True

    def _tagged(self, chain: str, bridge: str) -> list[list[str]]:
        """The rules of `chain` that carry the bridge's comment, as arguments
        that `-D chain` takes."""
        result = self._call("-S", chain, check=False)
        found = []
        for line in result.stdout.splitlines() if result.returncode == 0 else []:
            words = shlex.split(line)
            if words[:2] == ["-A", chain] and f"{COMMENT_PREFIX}{bridge}" in words:
                found.append(words[2:])
        return found

    def _ensure_exact_group(self, chain: str, bridge: str, rules: list[list[str]]) -> bool:
        """Makes the bridge's rules in `chain` exactly these, in this order;
        returns whether it changed anything. The new group is added before
        the old one is removed, so the bridge is never without rules."""
        current = self._tagged(chain, bridge)
        if len(current) == len(rules) and all(self._exists(chain, rule) for rule in rules):
            return False
        for rule in rules:
            self._call("-A", chain, *rule)
        for rule in current:  # -D removes the first match: the old copy
            self._call("-D", chain, *rule, check=False)
        return True

    # -- what the backend and the reconciler call ------------------------------

    def apply(self, bridge: str, *, allow: tuple[str, ...] = ()) -> bool:
        """Isolates one team bridge, letting it reach the `allow`ed networks;
        returns whether a rule changed."""
        if not bridge or len(bridge) > 15 or not all(c.isalnum() or c in "-_." for c in bridge):
            raise FirewallError(f"not a bridge interface name: {bridge!r}")
        try:
            allow = tuple(allowed_network(network) for network in allow)
        except ValueError as exc:
            raise FirewallError(str(exc)) from exc
        with _lock():
            self._ensure_chain(INPUT_CHAIN, "INPUT")
            self._ensure_chain(FORWARD_CHAIN, "DOCKER-USER")
            changed = self._ensure_group(INPUT_CHAIN, input_rules(bridge))
            rules = forward_rules(bridge, allow=allow, resolvers=self.resolvers)
            changed = self._ensure_exact_group(FORWARD_CHAIN, bridge, rules) or changed
        if changed:
            log.info("isolated the team bridge %s", bridge)
        return changed

    def remove(self, bridge: str) -> None:
        with _lock():
            for chain in (INPUT_CHAIN, FORWARD_CHAIN):
                for rule in self._tagged(chain, bridge):
                    self._call("-D", chain, *rule, check=False)

    def bridges(self) -> set[str]:
        """The bridges that have rules here, read from the rules' comments."""
        found = set()
        for chain in (INPUT_CHAIN, FORWARD_CHAIN):
            result = self._call("-S", chain, check=False)
            for line in result.stdout.splitlines() if result.returncode == 0 else []:
                words = line.split()
                if "--comment" in words:
                    comment = words[words.index("--comment") + 1].strip('"')
                    if comment.startswith(COMMENT_PREFIX):
                        found.add(comment[len(COMMENT_PREFIX):])
        return found

    def rules(self, chain: str) -> list[str]:
        """`iptables -S <chain>`, one rule a line."""
        return self._call("-S", chain).stdout.splitlines()

    def prune(self, existing) -> set[str]:
        """Removes the rules of bridges that are gone. `existing` is called
        after the rules are read (a network made in between had its rules
        added after it existed, so it is listed), and returns every bridge
        on the host. Returns the bridges pruned."""
        stale = self.bridges() - set(existing())
        for bridge in stale:
            self.remove(bridge)
        return stale

    def sync(self, bridges: dict[str, tuple[str, ...]], existing) -> None:
        """These bridges isolated, each with its allow-list (for the
        reconciler, after a reboot emptied iptables), and the rules of bridges
        that are gone from the host removed (see prune). Other bridges' rules
        are left alone: several Hakobune instances (a test run beside a
        running platform) share the host's iptables."""
        for bridge in sorted(bridges):
            self.apply(bridge, allow=bridges[bridge])
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
