"""Moving a team to a larger network block, after its quota was raised.

A team's block is sized from its quota when it is claimed
(accounts/networks.py), and a Docker bridge network keeps its subnet for its
life, so a larger block means a new network: the team's services and add-ons
stop for a short while (seconds, plus the time its services take to start and
answer their health check). `grow`:

1. claims the larger block, as any block is claimed (a row with a unique
   subnet), beside the team's own (`moving`);
2. with the deploy lock of each of the team's services held (no deploy,
   reconcile, sleep or wake of them meanwhile), takes the team's network down
   on each runtime that makes team networks: its instances removed, its
   add-ons stopped and taken off it, the network and its isolation rules
   removed;
3. makes the team's block the new one (the old one is released: free for
   another team once the host no longer routes it);
4. makes the network again in the new block, isolated, with the add-ons on it
   under their names, starts the add-ons and waits until they answer, then
   starts each live release again (the reconciler's start path:
   `reconcile_service`, which deploys the live release's instances and routes
   to them);
5. records the event `team.network_moved`.

Data volumes (the add-ons') are never touched. A failure before step 3 gives
the new block back and leaves the team as it was (its services started
again by the next reconcile); after it, the reconciler finishes the job for
the services (their network is made in the new block at their next start)."""

from __future__ import annotations

import logging

from django.utils.translation import gettext as _

from hakobune.platform.accounts import networks
from hakobune.platform.addons.actions import start_all_of_team
from hakobune.platform.locks import deploy_lock
from hakobune.platform.observability.events import record_event
from hakobune.runtime.base import DesiredService, RuntimeBackendError

from .backends import all_backends, backend_for
from .models import DesiredState, Release, Service
from .releases import deploy_spec, egress_allow_of

logger = logging.getLogger(__name__)

# Seconds to wait for a deploy of one of the team's services to end.
LOCK_WAIT = 60


class GrowRefused(Exception):
    """Why the team is not moved, in a sentence for staff."""


def grow(team, *, actor=None) -> list[str]:
    """Moves the team to a block of its quota's size (see the module's
    docstring). Returns what was done; raises GrowRefused (in words),
    NoRoomForTeamNetwork (the range is full) or RuntimeBackendError."""
    why = networks.grow_refusal(team)
    if why:
        raise GrowRefused(why)
    old = team.network.subnet
    new = networks.moving_to(team) or networks.claim(team, moving=True)
    backends = [backend for backend in all_backends() if networks.CAPABILITY in backend.capabilities]
    services = list(Service.objects.filter(team=team).exclude(desired_state=DesiredState.DELETED)
                    .select_related("team", "live_release").order_by("id"))
    done = [f"claimed {new} for team {team.name} (it had {old})"]
    locks = []
    try:
        for service in services:
            lock = deploy_lock(service.id, wait=LOCK_WAIT)
            if not lock.acquire():
                networks.abandon_move(team)
                raise GrowRefused(_("A deploy of %(service)s is still running after %(seconds)s seconds: move the "
                                    "team once it has ended.") % {"service": service.name, "seconds": LOCK_WAIT})
            locks.append(lock)
        try:
            for backend in backends:
                done += backend.take_down_team_network(team.name)
        except RuntimeBackendError:
            networks.abandon_move(team)
            raise
        networks.finish_move(team, new)
        done.append(f"released {old}")
        allow = egress_allow_of(team)
        for backend in backends:
            done += backend.make_team_network(team.name, new, allow=allow)
        done += start_all_of_team(team)
        failed = []
        for service in services:
            live = service.live_release
            if live is None or live.status != Release.Status.LIVE:
                continue
            spec = deploy_spec(service, live, egress_allow=allow, network_subnet=new)
            try:
                done += backend_for(service).reconcile_service(DesiredService(spec, state=service.desired_state))
            except RuntimeBackendError as exc:
                # The reconciler tries it again; the others go on.
                logger.warning("team %s: %s did not start again in %s: %s", team.name, service.name, new, exc.message)
                failed.append(service.name)
    finally:
        for lock in locks:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 - a lock that expired meanwhile is released already
                logger.warning("team %s: a deploy lock had expired", team.name)
    record_event("team.network_moved", team=team, actor=actor, old=old, new=new,
                 holds=networks.room_of(new) // 2, failed=failed)
    for line in done:
        logger.info("team %s: %s", team.name, line)
    if failed:
        raise RuntimeBackendError(
            f"team {team.name} moved to {new}, but {', '.join(failed)} did not start again there; the reconciler "
            "tries again within a minute", permanent=False)
    return done


def grow_by_id(team_id: int, user_id: int | None = None) -> None:
    """The worker's part of the staff's "Move to a larger block": a move that
    could not be done is an event of the team, with its reason."""
    from django.contrib.auth import get_user_model

    from hakobune.platform.accounts.models import Team

    team = Team.objects.filter(id=team_id).first()
    if team is None:
        return
    actor = get_user_model().objects.filter(id=user_id).first() if user_id else None
    try:
        grow(team, actor=actor)
    except GrowRefused as exc:
        record_event("team.network_move_failed", team=team, actor=actor, reason=str(exc))
    except networks.NoRoomForTeamNetwork as exc:
        record_event("team.network_move_failed", team=team, actor=actor, reason=exc.message)
    except RuntimeBackendError as exc:
        record_event("team.network_move_failed", team=team, actor=actor, reason=exc.message)
        raise
