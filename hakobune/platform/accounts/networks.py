"""Which address block each team's network has (runtime/subnets.py cuts the
blocks; this module hands them out).

A block is sized from the team's quota when it is claimed: room for every
instance the quota's CPU and memory let the team run at once (each at the
smallest an instance may have), twice, since a redeploy starts the new
instances beside the live ones (`containers_for`). A team whose quota is
raised later keeps its block (a Docker bridge network keeps its subnet for
its life); when its network does fill up, the deploy fails with the
diagnosis `network.full`, which says so and how to make room, never "deploy
again".

A team is given its block when it is created, so that a full range refuses
the new team at once, in words an administrator can act on, instead of
letting its people write code and fail at their first deploy. A team that has
none (made before blocks were handed out, or by an administrator in the
admin site) claims one at its next deploy. Either way the claim is an
INSERT of a row whose subnet and team are unique: two claims at once (two
processes, two hosts sharing the database) cannot take one block, and the
loser moves on to the next free one.

A team's existing network is never torn down for its subnet: the runtime
uses a network of the team's name as it finds it (one made from Docker's
pools before this keeps working) and uses the block only when it creates the
network. Deleting the team deletes its row (a cascade); destroy_team (or
later the reconciler) removes the network, and the block is not handed out again while the host
still routes it (host_networks lists it)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string

from hakobune.platform.diagnoses import Diagnosis
from hakobune.runtime.base import RuntimeBackendError
from hakobune.runtime.subnets import PoolError, capacity, free_blocks, host_networks, parse_pool, prefix_for, room

from .models import TeamNetwork

logger = logging.getLogger(__name__)

CAPABILITY = "team_networks"


class NoRoomForTeamNetwork(RuntimeBackendError):
    """The range is full, or not usable. Carries its diagnosis (`rule`,
    `params`); a platform fault, never "deploy again"."""

    platform_fault = True

    def __init__(self, rule: str, params: dict):
        self.diagnosis = Diagnosis(rule, params)
        super().__init__(self.diagnosis.in_english(), permanent=True)
        self.rule = rule
        self.params = params

    def in_words(self) -> str:
        return self.diagnosis.in_words()


def enabled() -> bool:
    """Whether teams get blocks here: a range is set and a configured runtime
    makes team networks."""
    if not settings.TEAM_SUBNET_POOL.strip():
        return False
    for config in settings.RUNTIME_BACKENDS.values():
        try:
            backend_class = import_string(config["BACKEND"])
        except ImportError:
            continue
        if CAPABILITY in getattr(backend_class, "capabilities", ()):
            return True
    return False


def pool():
    try:
        return parse_pool(settings.TEAM_SUBNET_POOL, settings.TEAM_SUBNET_PREFIX)
    except PoolError as exc:
        raise NoRoomForTeamNetwork("network.bad_pool", {"detail": str(exc)}) from exc


def containers_for(team) -> int:
    """How many containers the team's block should hold: every instance its
    quota allows at once, at the smallest CPU and memory an instance may
    have, and as many again for a redeploy of all of them."""
    from hakobune.platform.governance.quotas import limits_of
    from hakobune.runtime.release_config import all_settings

    smallest = {setting.name: setting.min for setting in all_settings() if setting.name in ("cpu", "memory_mb")}
    limits = limits_of(team)
    instances = min(
        int(limits.cpu / (smallest.get("cpu") or 0.1) + 1e-9),
        int(limits.memory_mb // (smallest.get("memory_mb") or 64)),
    )
    return 2 * max(instances, 1)


def block_prefix(team) -> int:
    """The prefix of the block the team gets: sized from its quota, between
    TEAM_SUBNET_PREFIX (the smallest) and TEAM_SUBNET_LARGEST_PREFIX."""
    try:
        return prefix_for(
            containers_for(team), smallest=settings.TEAM_SUBNET_PREFIX, largest=settings.TEAM_SUBNET_LARGEST_PREFIX
        )
    except PoolError as exc:
        raise NoRoomForTeamNetwork("network.bad_pool", {"detail": str(exc)}) from exc


def subnet_of(team) -> str | None:
    """The team's block, claimed now if it has none; None where teams get no
    blocks (no range set, or no local runtime)."""
    if not enabled():
        return None
    found = TeamNetwork.objects.filter(team=team).values_list("subnet", flat=True).first()
    return found or claim(team)


def subnets_by_team() -> dict[str, str]:
    """Every team's block, by team name (for the reconciler: one query)."""
    return dict(TeamNetwork.objects.values_list("team__name", "subnet"))


def claim(team, *, avoid=None) -> str:
    """Gives the team the lowest free block of the size its quota asks for
    (block_prefix) and returns it (the one it has, when it has one).
    `avoid`: the host's networks (read from the host when not given). Raises
    NoRoomForTeamNetwork when none is left."""
    the_pool = pool()
    prefix = max(block_prefix(team), the_pool.prefixlen)
    avoid = host_networks() if avoid is None else avoid
    taken = set(TeamNetwork.objects.values_list("subnet", flat=True))
    for block in free_blocks(the_pool, taken, avoid, prefix):
        try:
            with transaction.atomic():
                TeamNetwork.objects.create(team=team, subnet=str(block))
        except IntegrityError:
            # Someone took this block, or gave this team one, in between.
            mine = TeamNetwork.objects.filter(team=team).values_list("subnet", flat=True).first()
            if mine:
                return mine
            continue
        logger.info("team %s: network block %s", team.name, block)
        return str(block)
    refusal = NoRoomForTeamNetwork(
        "network.no_room",
        {"capacity": capacity(the_pool, prefix), "pool": str(the_pool), "prefix": prefix, "room": room(prefix)},
    )
    logger.error("team %s: %s", team.name, refusal.message)
    raise refusal


def claim_another(team, taken: str, engine_subnets=()) -> str:
    """The team's block `taken` turned out to be in use on the host (another
    Hakobune sharing the range made a network in it first, or a network was
    left behind by a team deleted outside Hakobune): a new one, clear of the
    host's networks and of every block the engine holds (`engine_subnets`)."""
    TeamNetwork.objects.filter(team=team, subnet=taken).delete()
    return claim(team, avoid=[*host_networks(), *engine_subnets])


def release(team) -> None:
    """Frees the team's block (deleting the team does it too)."""
    TeamNetwork.objects.filter(team=team).delete()
