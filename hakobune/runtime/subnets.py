"""Address blocks for team networks, cut from one configured range.

Docker's default address pools hold about 31 bridge networks (the
172.17–172.31 /16 blocks and sixteen 192.168 /20 blocks), so a host with one
network per team runs out at the 31st team. Hakobune instead gives each team
network a block of its own from TEAM_SUBNET_POOL and creates the network with
that subnet.

A block's size follows the team's quota (the platform works out how many
containers the quota lets the team run at once, and twice that, since a
redeploy starts the new instances beside the live ones): `prefix_for` picks
the smallest block that holds them, no smaller than TEAM_SUBNET_PREFIX and no
larger than TEAM_SUBNET_LARGEST_PREFIX. A Docker bridge network has one IPv4
subnet for its life, so the size is chosen when the block is claimed; blocks
of different sizes sit side by side in the range, each aligned on its size.

This module only does address arithmetic and reads the host; which team holds
which block is the platform's (a database row with a unique subnet)."""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import json
import subprocess
from typing import Iterable, Iterator

from .firewall import PRIVATE_RANGES, host_resolvers

DEFAULT_PREFIX = 26
# Addresses of a block no container gets: the network's, the broadcast and
# the bridge's gateway.
RESERVED_ADDRESSES = 3


class PoolError(ValueError):
    pass


def parse_pool(text: str, prefix: int = DEFAULT_PREFIX) -> ipaddress.IPv4Network:
    """The configured range, or PoolError saying what is wrong with it."""
    try:
        pool = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise PoolError(f"TEAM_SUBNET_POOL={text!r} is not a network (a.b.c.d/n): {exc}") from exc
    if pool.version != 4:
        raise PoolError(f"TEAM_SUBNET_POOL={text} is not IPv4; team networks are IPv4 only")
    if not 8 <= prefix <= 29:
        raise PoolError(f"TEAM_SUBNET_PREFIX={prefix} must be between 8 and 29")
    if pool.prefixlen > prefix:
        raise PoolError(f"TEAM_SUBNET_POOL={text} is smaller than one team's block (a /{prefix})")
    if not any(pool.subnet_of(ipaddress.ip_network(private)) for private in PRIVATE_RANGES):
        raise PoolError(
            f"TEAM_SUBNET_POOL={text} is not a private range ({', '.join(PRIVATE_RANGES)}): the firewall keeps "
            "containers out of those, and so out of other teams' networks"
        )
    return pool


def blocks(pool: ipaddress.IPv4Network, prefix: int = DEFAULT_PREFIX) -> Iterator[ipaddress.IPv4Network]:
    return pool.subnets(new_prefix=prefix)


def capacity(pool: ipaddress.IPv4Network, prefix: int = DEFAULT_PREFIX) -> int:
    """How many blocks of this size the pool holds."""
    return 2 ** (prefix - pool.prefixlen)


def room(prefix: int) -> int:
    """How many containers a block of this prefix holds."""
    return max(2 ** (32 - prefix) - RESERVED_ADDRESSES, 0)


def room_of(subnet: str) -> int:
    return room(ipaddress.ip_network(subnet, strict=False).prefixlen)


def prefix_for(containers: int, *, smallest: int = DEFAULT_PREFIX, largest: int = DEFAULT_PREFIX) -> int:
    """The prefix of the smallest block that holds `containers`, but no
    smaller than a /`smallest` and no larger than a /`largest` (a team whose
    quota asks for more gets the largest: its network fills before its
    quota, and says so)."""
    if largest > smallest:
        raise PoolError(f"the largest team block (/{largest}) is smaller than the smallest (/{smallest})")
    prefix = smallest
    while prefix > largest and room(prefix) < containers:
        prefix -= 1
    return prefix


def host_networks(run=subprocess.run, resolv_conf: str = "/etc/resolv.conf") -> list[ipaddress.IPv4Network]:
    """The IPv4 networks this host already uses: its interfaces' addresses
    (with their prefixes), its routes' destinations (a VPN, a LAN behind a
    gateway) and its resolvers. A team block overlapping one of these would
    make the host route to the team bridge instead, so it is skipped."""
    found: list[ipaddress.IPv4Network] = []

    def ip_json(*args: str) -> list:
        try:
            result = run(["ip", "-j", *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return []
        if result.returncode != 0:
            return []
        try:
            return json.loads(result.stdout or "[]")
        except ValueError:
            return []

    for interface in ip_json("-4", "addr"):
        for address in interface.get("addr_info") or []:
            if address.get("family") not in (None, "inet") or not address.get("local"):
                continue
            try:
                found.append(ipaddress.ip_network(f"{address['local']}/{address.get('prefixlen', 32)}", strict=False))
            except ValueError:
                continue
    for route in ip_json("-4", "route", "show", "table", "all"):
        destination = route.get("dst", "")
        if not destination or destination == "default":
            continue
        try:
            network = ipaddress.ip_network(destination if "/" in destination else f"{destination}/32", strict=False)
        except ValueError:
            continue
        if network.version == 4 and not network.is_loopback and not network.is_multicast:
            found.append(network)
    for resolver in host_resolvers(resolv_conf):
        found.append(ipaddress.ip_network(f"{resolver}/32"))
    return list(dict.fromkeys(found))


def free_blocks(
    pool: ipaddress.IPv4Network,
    taken: Iterable[str],
    avoid: Iterable[ipaddress.IPv4Network] = (),
    prefix: int = DEFAULT_PREFIX,
) -> Iterator[ipaddress.IPv4Network]:
    """The pool's blocks of this size, lowest first, that overlap no block a
    team holds (`taken`, of any size) and none of the host's networks
    (`avoid`; the team networks' own routes are among the host's routes, and
    are skipped as taken anyway)."""
    held = sorted(
        (ipaddress.ip_network(text, strict=False) for text in taken), key=lambda network: network.network_address
    )
    # The host's networks that touch the pool, to test each block against.
    near = [network for network in avoid if network.version == 4 and network.overlaps(pool)]
    starts = [int(network.network_address) for network in held]
    # reach[i]: the highest address any of the first i + 1 held blocks covers.
    reach = list(itertools.accumulate((int(network.broadcast_address) for network in held), max))
    for block in blocks(pool, prefix):
        # Of the held blocks starting before this one ends (a bisection finds
        # them), one overlaps it when any reaches its first address.
        index = bisect.bisect_right(starts, int(block.broadcast_address))
        if index and reach[index - 1] >= int(block.network_address):
            continue
        if any(block.overlaps(network) for network in near):
            continue
        yield block
