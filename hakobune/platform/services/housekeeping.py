"""What the scheduler keeps doing for every service: reconciling the
runtimes with the database, rewriting the routes, putting idle services to
sleep, pruning what rollback does not need; and the long actions a worker does for one
service or stack (deleting a service, rebuilding a stack)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from hakobune.platform import queue
from hakobune.platform.accounts import networks
from hakobune.platform.accounts.models import Team
from hakobune.platform.addons import actions as addon_actions
from hakobune.platform.addons.actions import remove_all_of_team
from hakobune.platform.volumes.actions import remove_all_of_team as remove_volumes_of_team
from hakobune.platform.volumes.models import Volume
from hakobune.platform.builds import disk
from hakobune.platform.builds.images import local_builder, prune_service_images
from hakobune.platform.builds.models import IN_PROGRESS, Build
from hakobune.platform.locks import deploy_lock
from hakobune.platform.notifications import alerts
from hakobune.platform.observability import events
from hakobune.runtime.base import DesiredService, LiveRoute, RuntimeBackendError, ServiceRef, looks_as_desired
from hakobune.worker.builders.base import BuildError

from . import scaling
from .backends import all_backends, backend_for
from .models import DesiredState, Release, Service
from .releases import deploy_spec, egress_allow_by_team
from .services import redeploy_services_on_stack

logger = logging.getLogger(__name__)

# Seconds a prune waits for a deploy of the service to end before it leaves
# the service to the next prune.
PRUNE_LOCK_WAIT = 10
# A team deletion not done after this long is sent again (its task failed, or
# Redis lost it).
TEAM_DELETION_RESEND_SECONDS = 120


def reconcile() -> None:
    """Makes every backend run what the database wants, both ways: instances
    that died or vanished (a dockerd or host restart) come back, strays go,
    add-ons whose container stopped or went start again, and the routes are
    rewritten. A service being deployed is left alone."""
    egress = egress_allow_by_team()
    subnets = networks.subnets_by_team()
    for backend in all_backends():
        try:
            for action in backend.repair_platform(egress):
                logger.info("reconcile %s: %s", backend.alias, action)
        except RuntimeBackendError as exc:
            logger.warning("reconcile could not repair %s: %s", backend.alias, exc.message)
        try:
            observed = backend.observe()
        except RuntimeBackendError as exc:
            logger.warning("reconcile could not look at %s at once: %s", backend.alias, exc.message)
            observed = None
        known = set()
        services = Service.objects.filter(target=backend.alias).exclude(desired_state=DesiredState.DELETED)
        for service in services.select_related("team", "live_release"):
            ref = ServiceRef(service.team.name, service.name)
            known.add(ref)
            if service.live_release is None or service.live_release.status != Release.Status.LIVE:
                continue
            spec = deploy_spec(
                service, service.live_release, egress_allow=egress.get(service.team.name, ()),
                network_subnet=subnets.get(service.team.name),
            )
            desired = DesiredService(spec, state=service.desired_state)
            alerts.crash_loop_seen(service, observed.get(ref) if observed is not None else None)
            _crashes_reported(backend, service, ref)
            if observed is not None and looks_as_desired(desired, observed.get(ref, [])):
                continue
            lock = deploy_lock(service.id)
            if not lock.acquire(blocking=False):
                logger.info("reconcile %s: skipped, a deploy holds its lock", ref.service)
                continue
            try:
                actions = backend.reconcile_service(desired)
                for action in actions:
                    logger.info("reconcile %s: %s", ref.service, action)
                if observed is None or not looks_as_desired(desired, _of_live_release(spec, observed.get(ref, []))):
                    events.record_repair(service, actions)  # not for the instances of a replaced release it took away
            except RuntimeBackendError as exc:
                logger.warning("reconcile could not repair %s/%s: %s", ref.team, ref.service, exc.message)
            finally:
                lock.release()
        try:
            for action in backend.remove_strays(known):
                logger.info("reconcile: %s", action)
        except RuntimeBackendError as exc:
            logger.warning("reconcile could not remove strays on %s: %s", backend.alias, exc.message)
        try:
            # Deleted teams: their networks go once their containers have.
            for action in backend.remove_team_networks(set(Team.objects.values_list("name", flat=True))):
                logger.info("reconcile: %s", action)
        except RuntimeBackendError as exc:
            logger.warning("reconcile could not remove the networks of deleted teams on %s: %s", backend.alias,
                           exc.message)
    try:
        for action in addon_actions.reconcile():
            logger.info("reconcile: %s", action)
    except RuntimeBackendError as exc:
        logger.warning("reconcile could not look at the add-ons: %s", exc.message)
    resend_team_deletions()
    sync_router()


def _crashes_reported(backend, service: Service, ref: ServiceRef) -> None:
    """What the runtime itself reports crashed (Cloud Run's failed revisions;
    nothing for the local runtime, whose exits the log collector reads from
    the engine): each an event once, and a crash-loop alert."""
    if service.desired_state != DesiredState.RUNNING:
        return
    try:
        crashes = backend.crashes(ref)
    except RuntimeBackendError as exc:
        logger.warning("reconcile could not ask %s what of %s/%s crashed: %s", backend.alias, ref.team, ref.service,
                       exc.message)
        return
    if not crashes:
        return
    for crash in crashes:
        events.record_runtime_crash(service, crash)
    alerts.crashes_reported(service, crashes)


def _of_live_release(spec, observed: list) -> list:
    return [instance for instance in observed if instance.release_id == str(spec.release_id)]


def resend_team_deletions() -> list[int]:
    """Teams marked deleting for a while whose deletion has not ended: the
    task failed (a service that could not be removed yet) or was lost; each
    pass of the reconciler sends it again, so a deleted team never stays half
    deleted."""
    since = timezone.now() - timedelta(seconds=TEAM_DELETION_RESEND_SECONDS)
    stuck = list(Team.objects.filter(deleting_since__lt=since).values_list("id", flat=True))
    for team_id in stuck:
        queue.enqueue("destroy_team", team_id)
    return stuck


def sync_router() -> None:
    """Rewrites each backend's routing from the database, whole, so a
    restarted router serves every live service again. A route the router
    leaves out (it failed its checks) is told on its service's page, and the
    others are served all the same."""
    for backend in all_backends():
        services = (
            Service.objects.filter(target=backend.alias, live_release__isnull=False, public=True)
            .exclude(desired_state__in=(DesiredState.DELETED, DesiredState.STOPPED))
            .select_related("team")
            .prefetch_related("domains")
        )
        services = list(services)
        held = []
        live = []
        for svc in services:
            # A service being deployed keeps the route it has: its deploy
            # switches it, and the database tells the new release only after.
            lock = deploy_lock(svc.id)
            free = lock.acquire(blocking=False)
            if free:
                held.append(lock)
            live.append(
                LiveRoute(
                    hostname=svc.hostname,
                    team=svc.team.name,
                    service=svc.name,
                    release_id=svc.live_release_id,
                    asleep=svc.is_asleep,
                    aliases=svc.aliases,
                    redirects=svc.redirects,
                    keep_current=not free,
                )
            )
        try:
            refused = backend.sync_routes(live) or {}
        except RuntimeBackendError as exc:
            logger.warning("could not sync the routes of %s: %s", backend.alias, exc.message)
            continue
        finally:
            for lock in held:
                lock.release()
        _note_route_problems(backend.alias, services, refused)


def _note_route_problems(alias: str, services, refused: dict[str, str]) -> None:
    """Writes on each service why its route was left out, or clears it."""
    Service.objects.filter(target=alias).exclude(id__in=[svc.id for svc in services]).exclude(
        route_problem="").update(route_problem="")
    for svc in services:
        problem = refused.get(svc.hostname, "")
        if problem:
            logger.warning("the route of %s was left out: %s", svc, problem)
        if svc.route_problem != problem:
            Service.objects.filter(id=svc.id).update(route_problem=problem)


def scale_idle_to_zero() -> None:
    """Notes the router's traffic, then puts services idle for longer than their
    idle minutes to sleep."""
    scaling.note_traffic(settings.ROUTER_ACCESS_LOG)
    for service in scaling.idle_services():
        lock = deploy_lock(service.id)
        if not lock.acquire(blocking=False):
            continue
        try:
            scaling.put_to_sleep(service)
        except RuntimeBackendError as exc:
            logger.warning("could not scale %s to zero: %s", service, exc.message)
        finally:
            lock.release()


def prune_images() -> int:
    """Removes each service's images that the policy does not keep
    (builds/disk.py: its live release's, its last KEEP_RELEASES releases',
    and those of builds on their way to a release), each through the builder
    that made them. Returns how many went."""
    removed = 0
    for service in Service.objects.exclude(desired_state=DesiredState.DELETED).select_related("team", "live_release"):
        # Under the service's deploy lock: a deploy or rollback choosing an
        # image never races its removal.
        lock = deploy_lock(service.id)
        if not lock.acquire(blocking=True, blocking_timeout=PRUNE_LOCK_WAIT):
            logger.info("prune %s: skipped, a deploy holds its lock", service)
            continue
        try:
            pruned = prune_service_images(service, disk.images_kept_for(service))
        except BuildError as exc:
            logger.warning("could not prune the images of %s: %s", service, exc.message)
            continue
        finally:
            lock.release()
        for tag in pruned:
            logger.info("pruned %s", tag)
        removed += len(pruned)
    return removed


def prune() -> dict:
    """The scheduled prune: images the policy does not keep, build leftovers
    older than BUILD_CACHE_PRUNE_HOURS, and source snapshots nothing needs.
    Records what it freed for the administrators' page; returns it."""
    before = {space.path: space.free_bytes for space in disk.watched_spaces()}
    outcome = {"images_removed": prune_images(), "leftover_bytes": 0, "errors": []}
    if settings.BUILD_CACHE_PRUNE_HOURS > 0:
        try:
            outcome["leftover_bytes"] = local_builder().prune_leftovers(settings.BUILD_CACHE_PRUNE_HOURS)
        except BuildError as exc:
            outcome["errors"].append(exc.message)
            logger.warning("could not prune the build leftovers: %s", exc.message)
    outcome["snapshots_deleted"] = prune_source_snapshots()
    outcome["events_deleted"] = events.prune()
    after = {space.path: space.free_bytes for space in disk.watched_spaces()}
    # What the file systems gained (another writer may have taken some meanwhile).
    outcome["bytes_freed"] = max(sum(after.get(path, 0) - free for path, free in before.items()), 0)
    disk.record_prune(outcome)
    logger.info("prune: %s", outcome)
    return outcome


def prune_source_snapshots() -> int:
    """Deletes the source snapshots that no redeploy, rollback or stack
    rebuild can need: each service keeps those of its last
    KEEP_SOURCE_SNAPSHOTS deploys, of builds still under way, and of the
    builds of its live and kept releases (a stack rebuild redeploys the live
    one's). A redeploy shares its snapshot file with the build it came from,
    so a file goes only when no kept build names it. Returns the files deleted."""
    deleted = 0
    storage = default_storage
    for service in Service.objects.select_related("live_release"):
        builds = list(service.builds.exclude(source_archive="").order_by("-number").values_list(
            "id", "source_archive", "status"))
        kept_ids = {build_id for build_id, _, _ in builds[: settings.KEEP_SOURCE_SNAPSHOTS]}
        kept_ids |= {build_id for build_id, _, status in builds if status in IN_PROGRESS}
        kept_ids |= set(service.releases.order_by("-number").values_list("build_id", flat=True)[: settings.KEEP_RELEASES])
        if service.live_release_id:
            kept_ids.add(service.live_release.build_id)
        kept_names = {name for build_id, name, _ in builds if build_id in kept_ids}
        for build_id, name, _ in builds:
            if build_id in kept_ids:
                continue
            Build.objects.filter(id=build_id).update(source_archive="")
            if name not in kept_names and storage.exists(name):
                storage.delete(name)
                kept_names.add(name)  # deleted once
                deleted += 1
    return deleted


def destroy_service(service_id: int) -> None:
    service = Service.objects.select_related("team").filter(id=service_id, desired_state=DesiredState.DELETED).first()
    if service is None:
        return
    with deploy_lock(service.id):
        backend_for(service).destroy(ServiceRef(service.team.name, service.name))
        prune_service_images(service)
        snapshots = set(service.builds.exclude(source_archive="").values_list("source_archive", flat=True))
        snapshots |= set(service.plan_checks.exclude(source_archive="").values_list("source_archive", flat=True))
        with transaction.atomic():
            # Releases protect their builds; they go first, then the service
            # with its builds, logs and webhook deliveries.
            Service.objects.filter(id=service.id).update(live_release=None)
            service.releases.all().delete()
            # Its volumes stay, with their data, mounted nowhere.
            Volume.objects.filter(service=service).update(service=None, mount_path="")
            service.delete()
        for name in snapshots:
            if default_storage.exists(name):
                default_storage.delete(name)


def destroy_team(team_id: int) -> None:
    """The worker's half of deleting a team (services.delete_team): each of
    its services is destroyed as a deleted service is, then the team goes
    (its members, policy and network block with it) and its network is
    removed from each runtime at once, so its block serves the next team. A
    service that could not be removed raises: the task is tried again, and
    the team stays, marked deleting, until it is done."""
    team = Team.objects.filter(id=team_id, deleting_since__isnull=False).first()
    if team is None:
        return
    for service_id in Service.objects.filter(team=team).values_list("id", flat=True):
        Service.objects.filter(id=service_id).update(desired_state=DesiredState.DELETED)
        destroy_service(service_id)
    # Its add-ons' containers and data volumes: deleting the team was confirmed by its name.
    for action in remove_all_of_team(team.name):
        logger.info("%s", action)
    # Its volumes and their data, likewise.
    for action in remove_volumes_of_team(team.name):
        logger.info("%s", action)
    with transaction.atomic():
        # Releases protect their builds; they go first (as destroy_service does).
        Service.objects.filter(team=team).update(live_release=None)
        Release.objects.filter(service__team=team).delete()
        team.delete()
    logger.info("team %s deleted, with its services", team.name)
    known = set(Team.objects.values_list("name", flat=True))
    for backend in all_backends():
        try:
            for action in backend.remove_team_networks(known):
                logger.info("%s", action)
        except RuntimeBackendError as exc:
            # The reconciler removes it later.
            logger.warning("could not remove the network of team %s on %s yet: %s", team.name, backend.alias,
                           exc.message)


def rebuild_stack(language: str, user_id: int | None = None) -> None:
    """An admin's one action: build the language's stack afresh from Debian,
    then redeploy every live service built on it."""
    stack = local_builder().rebuild_stack(language, lambda line: logger.info("stack %s: %s", language, line))
    user = get_user_model().objects.filter(id=user_id).first() if user_id else None
    builds = redeploy_services_on_stack(language=language, created_by=user)
    logger.info("stack %s rebuilt (%s); redeploying %d service(s)", language, stack.version, len(builds))
