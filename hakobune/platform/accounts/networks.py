"""Which address block each team's network has (runtime/subnets.py cuts the
blocks; this module hands them out).

A block is sized from the team's quota when it is claimed: room for every
instance the quota's CPU and memory let the team run at once (each at the
smallest an instance may have), twice, since a redeploy starts the new
instances beside the live ones (`containers_for`). A Docker bridge network keeps
its subnet for its life, so a team whose quota is raised later keeps its
block until it is moved: `too_small` tells the staff who raised the quota
(the team's policy page), and services/team_networks.py moves the team to a
larger block, claimed as below, with a short stop of its services. A network
that does fill up fails the deploy with the diagnosis `network.full`, which
says so and how to make room, never "deploy again".

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
from django.utils.translation import gettext as _

from hakobune.platform.diagnoses import Diagnosis
from hakobune.runtime.base import RuntimeBackendError
from hakobune.runtime.subnets import (
    PoolError, capacity, free_blocks, host_networks, parse_pool, prefix_for, room, room_of,
)

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
    found = TeamNetwork.objects.filter(team=team, moving=False).values_list("subnet", flat=True).first()
    return found or claim(team)


def subnets_by_team() -> dict[str, str]:
    """Every team's block, by team name (for the reconciler: one query)."""
    return dict(TeamNetwork.objects.filter(moving=False).values_list("team__name", "subnet"))


def claim(team, *, avoid=None, moving: bool = False, prefix: int | None = None) -> str:
    """Gives the team the lowest free block of the size its quota asks for
    (block_prefix, or `prefix`) and returns it (the one it has, when it has
    one). `avoid`: the host's networks (read from the host when not given).
    `moving`: the block the team is moved to (grow), held beside its own.
    Raises NoRoomForTeamNetwork when none is left."""
    the_pool = pool()
    prefix = max(block_prefix(team) if prefix is None else prefix, the_pool.prefixlen)
    avoid = host_networks() if avoid is None else avoid
    taken = set(TeamNetwork.objects.values_list("subnet", flat=True))
    for block in free_blocks(the_pool, taken, avoid, prefix):
        try:
            with transaction.atomic():
                TeamNetwork.objects.create(team=team, subnet=str(block), moving=moving)
        except IntegrityError:
            # Someone took this block, or gave this team one, in between.
            mine = TeamNetwork.objects.filter(team=team, moving=moving).values_list("subnet", flat=True).first()
            if mine:
                return mine
            continue
        logger.info("team %s: network block %s%s", team.name, block, " (to move to)" if moving else "")
        return str(block)
    refusal = NoRoomForTeamNetwork(
        "network.no_room",
        {"capacity": capacity(the_pool, prefix), "pool": str(the_pool), "prefix": prefix, "room": room(prefix)},
    )
    logger.error("team %s: %s", team.name, refusal.message)
    raise refusal


def too_small(team) -> dict | None:
    """When the team's block holds fewer containers than its quota now asks
    for (twice its instances, containers_for): the
    numbers, for the sentence staff read (`subnet`, `holds` and `allows` in
    instances, `prefix` of the block it would get, `larger`: whether that one
    is larger: not when the team has the largest already). None otherwise,
    and where teams get no blocks."""
    if not enabled():
        return None
    current = TeamNetwork.objects.filter(team=team, moving=False).values_list("subnet", flat=True).first()
    if not current:
        return None  # it claims one of its quota's size at its next deploy
    wanted = block_prefix(team)
    have = room_of(current)
    needed = containers_for(team)
    if have >= needed:
        return None
    return {"subnet": current, "holds": have // 2, "allows": needed // 2, "prefix": wanted,
            "room": room(wanted) // 2, "larger": wanted < int(current.split("/")[1])}


def grow_refusal(team) -> str:
    """Why the team cannot be moved to a larger block now (in a sentence for
    staff), or "" when it can (services/team_networks.py moves it)."""
    if not enabled():
        return _("Team networks get no address blocks on this platform (TEAM_SUBNET_POOL is empty, or no runtime "
                 "makes team networks): there is no block to move.")
    if team.deleting_since is not None:
        return _("Team %(team)s is being deleted.") % {"team": team.name}
    current = team.network
    if current is None:
        return _("Team %(team)s has no network block yet: it is given one of its quota's size at its next "
                 "deploy.") % {"team": team.name}
    short = too_small(team)
    if short is None:
        return _("Team %(team)s's block %(subnet)s already holds every instance its quota allows: it needs no "
                 "larger one.") % {"team": team.name, "subnet": current.subnet}
    if not short["larger"]:
        return _("Team %(team)s's block %(subnet)s is the largest Hakobune gives (TEAM_SUBNET_LARGEST_PREFIX): "
                 "raise that setting first, or lower the team's quota.") % {"team": team.name,
                                                                            "subnet": current.subnet}
    return ""


def moving_to(team) -> str | None:
    """The block the team is being moved to, if a move has begun."""
    return TeamNetwork.objects.filter(team=team, moving=True).values_list("subnet", flat=True).first()


def finish_move(team, new: str) -> None:
    """The team's block is now `new`: its old one is released (free for
    another team once the host no longer routes it)."""
    with transaction.atomic():
        TeamNetwork.objects.filter(team=team, moving=False).delete()
        TeamNetwork.objects.filter(team=team, subnet=new, moving=True).update(moving=False)
    logger.info("team %s: network block now %s", team.name, new)


def abandon_move(team) -> None:
    TeamNetwork.objects.filter(team=team, moving=True).delete()


def claim_another(team, taken: str, engine_subnets=()) -> str:
    """The team's block `taken` turned out to be in use on the host (another
    Hakobune sharing the range made a network in it first, or a network was
    left behind by a team deleted outside Hakobune): a new one, clear of the
    host's networks and of every block the engine holds (`engine_subnets`)."""
    TeamNetwork.objects.filter(team=team, subnet=taken, moving=False).delete()
    return claim(team, avoid=[*host_networks(), *engine_subnets])


def release(team) -> None:
    """Frees the team's blocks (deleting the team does it too)."""
    TeamNetwork.objects.filter(team=team).delete()
