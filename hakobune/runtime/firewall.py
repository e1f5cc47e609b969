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
      -i <bridge> -d 169.254.0.0/16 -j DROP
      -i <bridge> -o <bridge> -j RETURN
      -i <bridge> -o br-+ -j DROP
      -i <bridge> -o docker0 -j DROP

So a service reaches its own team's containers and the internet (through
Docker's NAT; DNS goes through Docker's resolver inside the container), and
nothing of the host nor of any other Docker network. The replies to
connections the host opens (Caddy and the health checks dialing the published
port on 127.0.0.1) are ESTABLISHED and pass. RETURN, never ACCEPT: these rules
only ever take away, and the host's own rules still decide the rest.

Every rule carries a comment naming its bridge, so that the rules of removed
networks can be pruned. Commands are argument lists; each rule is checked
with `iptables -C` before it is added, so applying twice changes nothing."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from contextlib import contextmanager

log = logging.getLogger(__name__)

INPUT_CHAIN = "HAKOBUNE-INPUT"
FORWARD_CHAIN = "HAKOBUNE-FORWARD"
METADATA_RANGE = "169.254.0.0/16"
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


def forward_rules(bridge: str) -> list[list[str]]:
    tag = _comment(bridge)
    return [
        ["-i", bridge, "-d", METADATA_RANGE, *tag, "-j", "DROP"],
        ["-i", bridge, "-o", bridge, *tag, "-j", "RETURN"],
        ["-i", bridge, "-o", "br-+", *tag, "-j", "DROP"],
        ["-i", bridge, "-o", "docker0", *tag, "-j", "DROP"],
    ]


class Firewall:
    def __init__(self, iptables: str = "iptables", run=subprocess.run):
        self.iptables = iptables
        self._run = run

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

    # -- what the backend and the reconciler call ------------------------------

    def apply(self, bridge: str) -> bool:
        """Isolates one team bridge; returns whether a rule was added."""
        if not bridge or len(bridge) > 15 or not all(c.isalnum() or c in "-_." for c in bridge):
            raise FirewallError(f"not a bridge interface name: {bridge!r}")
        with _lock():
            self._ensure_chain(INPUT_CHAIN, "INPUT")
            self._ensure_chain(FORWARD_CHAIN, "DOCKER-USER")
            changed = self._ensure_group(INPUT_CHAIN, input_rules(bridge))
            changed = self._ensure_group(FORWARD_CHAIN, forward_rules(bridge)) or changed
        if changed:
            log.info("isolated the team bridge %s", bridge)
        return changed

    def remove(self, bridge: str) -> None:
        with _lock():
            for chain, rules in ((INPUT_CHAIN, input_rules(bridge)), (FORWARD_CHAIN, forward_rules(bridge))):
                for rule in rules:
                    while self._exists(chain, rule):
                        self._call("-D", chain, *rule)

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

    def sync(self, bridges: set[str], existing) -> None:
        """These bridges isolated (for the reconciler, after a reboot emptied
        iptables), and the rules of bridges that are gone from the host
        removed (see prune). Other bridges' rules are left alone: several
        Hakobune instances (a test run beside a running platform) share the
        host's iptables."""
        for bridge in sorted(bridges):
            self.apply(bridge)
        self.prune(existing)


def available() -> bool:
    return shutil.which("iptables") is not None


def sync_team_networks(client, firewall: Firewall | None = None, *, label: str = "org.hakobune.managed=true") -> set[str]:
    """Applies the isolation to every Hakobune team network on this Docker
    Engine and prunes the rules of networks that are gone; returns the bridges."""
    firewall = firewall or Firewall()
    bridges = {bridge_of(network) for network in client.networks.list(filters={"label": label})}
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
