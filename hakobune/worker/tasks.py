"""The deploy pipeline as Celery tasks, one per step. Each task takes one build
id, re-reads the row, and claims its step with a conditional UPDATE, so a task
delivered twice does its work once. Each step queues the next when it is done.

    queued → fetching → detecting → building → deploying → live   (or failed)

Everything below this module (source, buildpacks, builder, runtime) takes and
returns plain values; this is where they meet the models."""

from __future__ import annotations

import functools
import logging
import shutil
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import redis
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from hakobune.platform.builds.images import build_request_for, builder_for, local_builder, prune_service_images
from hakobune.platform.builds.log import BuildLog
from hakobune.platform.builds.models import IN_PROGRESS, Build, BuildStatus
from hakobune.platform.builds.state import advance, claim, fail
from hakobune.platform.crypto import decrypt
from hakobune.platform.services import sources
from hakobune.platform.services.backends import all_backends, backend_for
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.services import env_of, secret_env_of
from hakobune.runtime.base import DeploySpec, DesiredService, LiveRoute, RuntimeBackendError, ServiceRef
from hakobune.worker import builder, gitfetch, source, stacks
from hakobune.worker.builders.base import BuildError
from hakobune.worker.buildpacks import BuildPlan, NoStackDetected, detect

logger = logging.getLogger(__name__)
S = BuildStatus

USER_ERRORS = (source.SourceError, NoStackDetected, builder.BuildError, RuntimeBackendError, stacks.StackError)


def workspace_dir(build_id: int) -> Path:
    return settings.DATA_DIR / "workspaces" / f"build-{build_id}"


def source_dir(build: Build) -> Path:
    """The unpacked app inside the workspace (recorded by fetch_source)."""
    marker = workspace_dir(build.id) / "root"
    return Path(marker.read_text().strip())


@contextmanager
def pipeline_step(build_id: int, log: BuildLog):
    """Turns any failure inside a step into a failed build with a reason a
    person can act on, and removes the workspace when the build has ended."""
    try:
        yield
    except USER_ERRORS as exc:
        message = getattr(exc, "message", None) or str(exc)
        tail = getattr(exc, "log_tail", None) or []
        if tail:
            log.write("---- last lines ----")
            for line in tail:
                log.write(line)
        log.write(f"✗ {message}")
        log.flush()
        fail(build_id, message)
        shutil.rmtree(workspace_dir(build_id), ignore_errors=True)
    except Exception:
        logger.exception("build %s failed unexpectedly", build_id)
        log.write("✗ Hakobune failed while handling this build. The operators have the details; deploy again.")
        log.flush()
        fail(build_id, "Hakobune failed while handling this build (an internal error, not your app). Deploy again.")
        shutil.rmtree(workspace_dir(build_id), ignore_errors=True)
    finally:
        log.flush()


@shared_task
def fetch_source(build_id: int) -> None:
    if not advance(build_id, S.QUEUED, S.FETCHING, claimed_step=S.FETCHING):
        return
    build = Build.objects.select_related("service__team").get(id=build_id)
    log = BuildLog(build_id)
    with pipeline_step(build_id, log):
        workspace = workspace_dir(build_id)
        shutil.rmtree(workspace, ignore_errors=True)
        if build.source_kind == "git" and not build.source_archive:
            tree = _fetch_git(build, workspace, log)
        else:
            tree = _unpack_archive(build, workspace, log)
        root = source.select_subdir(tree, build.source_subdir)
        if build.source_subdir:
            log.write(f"Using the folder {build.source_subdir}")
        digest = source.tree_digest(root)
        (workspace / "root").write_text(str(root))
        Build.objects.filter(id=build_id).update(source_digest=digest)
        log.write(f"✓ Source digest {digest[:12]}")
        log.flush()
        if advance(build_id, S.FETCHING, S.DETECTING):
            detect_stack.delay(build_id)


def _source_limits() -> source.Limits:
    return source.Limits(
        max_archive_bytes=settings.SOURCE_MAX_ARCHIVE_BYTES,
        max_total_bytes=settings.SOURCE_MAX_TOTAL_BYTES,
        max_entries=settings.SOURCE_MAX_ENTRIES,
        max_ratio=settings.SOURCE_MAX_RATIO,
    )


def _unpack_archive(build: Build, workspace: Path, log: BuildLog) -> Path:
    archive = Path(build.source_archive.path)
    log.write(f"Unpacking {build.source_filename or archive.name} ({_size(archive.stat().st_size)})")
    extracted = source.extract_archive(archive, workspace / "src", _source_limits())
    log.write(f"✓ {extracted.files} files, {_size(extracted.total_bytes)}")
    return extracted.root


def _fetch_git(build: Build, workspace: Path, log: BuildLog) -> Path:
    """Clones the build's ref, then keeps the tree as the build's snapshot so
    that rebuilds and rollbacks need no second fetch."""
    service = build.service
    limits = _source_limits()
    fetched = gitfetch.fetch_git(
        gitfetch.GitSource(
            url=build.git_url,
            ref=build.git_ref,
            token=decrypt(service.git_token_encrypted),
            submodules=service.git_submodules,
        ),
        workspace / "src",
        policy=sources.source_policy(),
        resolver=sources.resolver,
        timeout=settings.GIT_TIMEOUT,
        max_bytes=limits.max_total_bytes,
        max_entries=limits.max_entries,
        log=log.write,
    )
    snapshot = f"sources/{service.team.name}/{service.name}/build-{build.number}-{fetched.commit[:12]}.tar.gz"
    source.pack_tree(fetched.root, Path(settings.MEDIA_ROOT) / snapshot)
    Build.objects.filter(id=build.id).update(source_archive=snapshot, git_commit=fetched.commit)
    return fetched.root


def _size(count: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


@shared_task
def detect_stack(build_id: int) -> None:
    if not claim(build_id, S.DETECTING):
        return
    build = Build.objects.select_related("service").get(id=build_id)
    log = BuildLog(build_id)
    with pipeline_step(build_id, log):
        detection = detect(source_dir(build))
        service = build.service
        plan = _with_service_settings(detection.plan, service, log)
        log.write(f"✓ Detected a {detection.stack} app: {detection.reason}")
        for phase, command in plan.steps():
            if command:
                log.write(f"  {phase} command: {command}")
        if plan.uses_own_dockerfile:
            log.write(f"  built from {plan.dockerfile_path}, started with its CMD")
        for note in plan.notes:
            log.write(f"  note: {note}")
        log.flush()
        if advance(
            build_id, S.DETECTING, S.BUILDING, plan=plan.to_dict(), detection_reason=detection.reason
        ):
            build_image.delay(build_id)


def _with_service_settings(plan: BuildPlan, service: Service, log: BuildLog) -> BuildPlan:
    """The service's settings in the portal over the plan. A port changed in
    the portal (anything but the platform's default) wins over the app's
    hakobune.toml, which wins over detection; so does a health-check path
    other than "/"."""
    from hakobune.worker.buildpacks import apply_service_settings

    port = int(service.port)
    chosen_in_portal = port != settings.DEFAULT_SERVICE_PORT
    if plan.sources.get("port") and plan.port != port:
        if chosen_in_portal:
            log.write(f"  {plan.sources['port']} says port {plan.port}; the service's setting, port {port}, wins.")
        else:
            log.write(f"  {plan.sources['port']} sets the port: {plan.port}.")
    health = getattr(service, "health_check_path", "") or ""
    if service.start_command or service.build_command:
        log.write("  the service's settings set: " + ", ".join(
            name for name, value in (("start command", service.start_command), ("build command", service.build_command))
            if value
        ))
    return apply_service_settings(
        plan,
        port=port if chosen_in_portal or not plan.sources.get("port") else None,
        health_check_path=health if health not in ("", "/") else None,
        start_command=service.start_command or None,
        build_command=service.build_command or None,
    )


@shared_task
def build_image(build_id: int) -> None:
    if not claim(build_id, S.BUILDING):
        return
    build = Build.objects.select_related("service__team").get(id=build_id)
    log = BuildLog(build_id)
    with pipeline_step(build_id, log):
        plan = BuildPlan.from_dict(build.plan)
        request = build_request_for(build, plan, source_dir(build), workspace_dir(build_id))
        image = builder_for(build.service).build(request, log.write)
        log.write(f"✓ Image {image.ref}")
        log.flush()
        Build.objects.filter(id=build_id).update(image=image.ref, plan=image.plan.to_dict())
        shutil.rmtree(workspace_dir(build_id), ignore_errors=True)
        _built(build_id, build.service, log)


def _built(build_id: int, service: Service, log: BuildLog) -> None:
    """The image is built: on to the deploy, or first to an administrator's
    review where the service's team asks for one."""
    from hakobune.platform.governance.reviews import needs_review, request_review

    if needs_review(service):
        if advance(build_id, S.BUILDING, S.REVIEWING):
            request_review(service)
            log.write("⏸ New services of this team are reviewed by an administrator before they go live; "
                      "this deploy goes on by itself once they approve.")
        return
    if advance(build_id, S.BUILDING, S.DEPLOYING):
        deploy_release.delay(build_id)


@functools.cache
def redis_client() -> redis.Redis:
    """One connection pool per process for locks and bookkeeping."""
    return redis.Redis.from_url(settings.REDIS_URL)


def deploy_lock(service_id: int):
    """One deploy per service at a time, across every worker."""
    return redis_client().lock(f"hakobune:deploy-lock:service:{service_id}", timeout=900, blocking_timeout=900)


def release_config(service: Service, plan: dict | None = None) -> dict:
    """A release's configuration: the service's resources, and the port and
    health-check path of the build's plan (where the service's settings and
    the app's hakobune.toml already met)."""
    plan = plan or {}
    return {
        "port": plan.get("port") or service.port,
        "cpu": float(service.cpu),
        "memory_mb": service.memory_mb,
        "instances": service.instances,
        "health_check_path": plan.get("health_check_path") or service.health_check_path or "/",
        "min_instances": service.min_instances,
        "max_instances": service.max_instances,
        "public": service.public,
        "concurrency": service.concurrency,
        "request_timeout": service.request_timeout,
        "ingress": service.ingress,
    }


@shared_task
def deploy_release(build_id: int) -> None:
    """The pipeline's last step: a new release of the built image, started."""
    if not claim(build_id, S.DEPLOYING):
        return
    build = Build.objects.select_related("service__team").get(id=build_id)
    service = build.service
    log = BuildLog(build_id)
    with pipeline_step(build_id, log), deploy_lock(service.id):
        with transaction.atomic():
            number = (service.releases.aggregate(last=Max("number"))["last"] or 0) + 1
            release = Release.objects.create(
                service=service,
                build=build,
                number=number,
                image=build.image,
                config=release_config(service, build.plan),
                status=Release.Status.DEPLOYING,
                description=f"Deploy #{build.number}",
            )
        _start_release(release, log.write)
        advance(build_id, S.DEPLOYING, S.LIVE)
        service.refresh_from_db()  # the live release now gives its address (Cloud Run's own)
        log.write(f"✓ Live at {service.url}")


@shared_task
def start_release(release_id: int) -> None:
    """Starts a release made without a build: a rollback or a new configuration
    of the same image. A failure leaves the live release serving."""
    if not Release.objects.filter(id=release_id, status=Release.Status.PENDING).update(
        status=Release.Status.DEPLOYING
    ):
        return
    release = Release.objects.select_related("service__team").get(id=release_id)
    with deploy_lock(release.service_id):
        try:
            _start_release(release, lambda line: logger.info("%s: %s", release, line))
        except RuntimeBackendError as exc:
            logger.warning("%s did not start: %s", release, exc.message)
        except Exception:
            logger.exception("%s failed unexpectedly", release)
            Release.objects.filter(id=release.id).update(
                status=Release.Status.FAILED, failure_reason="Hakobune failed while starting this release."
            )


def _start_release(release: Release, log) -> None:
    """Starts the release on its service's backend and makes it the live one.
    Raises RuntimeBackendError (and marks the release failed) when it does not
    come up; the previous release then keeps serving."""
    service = release.service
    spec = deploy_spec(service, release)
    log(f"Starting v{release.number}: {spec.instances} × ({spec.cpu:g} CPU, {spec.memory_mb} MiB) on {service.target}")
    try:
        backend = backend_for(service)
        if spec.secret_env and "secret_env" not in backend.capabilities:
            raise RuntimeBackendError(
                f"{', '.join(sorted(spec.secret_env))} should come from Secret Manager, which {service.target} "
                "cannot read: give them values in the service's environment variables."
            )
        result = backend.deploy(spec)
    except RuntimeBackendError as exc:
        tail = "\n".join(exc.log_tail[-10:])
        Release.objects.filter(id=release.id).update(
            status=Release.Status.FAILED, failure_reason=exc.message + (f"\n{tail}" if tail else "")
        )
        raise
    with transaction.atomic():
        Release.objects.filter(service=service, status=Release.Status.LIVE).exclude(id=release.id).update(
            status=Release.Status.SUPERSEDED
        )
        Release.objects.filter(id=release.id).update(
            status=Release.Status.LIVE, live_at=timezone.now(), runtime_state=result.state
        )
        Service.objects.filter(id=service.id).update(live_release=release, desired_state="running")
    _retire_after_commit(service, release)


def _retire_after_commit(service: Service, release: Release) -> None:
    """The replaced release drains once the new one is recorded live, so the
    portal says "live" as soon as the router serves it."""

    def retire():
        try:
            backend_for(service).retire_previous(
                ServiceRef(service.team.name, service.name), keep_release_id=release.id
            )
        except RuntimeBackendError as exc:
            logger.warning("could not stop the releases %s replaced: %s", release, exc.message)

    transaction.on_commit(retire)


def deploy_spec(service: Service, release: Release) -> DeploySpec:
    config = release.config
    return DeploySpec(
        team=service.team.name,
        service=service.name,
        release_id=release.id,
        release_number=release.number,
        image=release.image,
        hostname=service.hostname,
        port=config["port"],
        cpu=config["cpu"],
        memory_mb=config["memory_mb"],
        instances=config["instances"],
        health_check_path=config["health_check_path"],
        aliases=service.aliases,
        env=env_of(service),
        secret_env=secret_env_of(service),
        # Releases made before these settings existed: the service's.
        min_instances=config.get("min_instances", service.min_instances),
        max_instances=config.get("max_instances", service.max_instances),
        public=config.get("public", service.public),
        restart=config.get("restart", ""),
        concurrency=config.get("concurrency"),
        request_timeout=config.get("request_timeout"),
        ingress=config.get("ingress") or "",
    )


@shared_task
def reconcile() -> None:
    """Makes every backend run what the database wants, both ways: instances
    that died or vanished (a dockerd or host restart) come back, strays go,
    and the routes are rewritten. A service being deployed is left alone."""
    for backend in all_backends():
        try:
            for action in backend.repair_platform():
                logger.info("reconcile %s: %s", backend.alias, action)
        except RuntimeBackendError as exc:
            logger.warning("reconcile could not repair %s: %s", backend.alias, exc.message)
        known = set()
        services = Service.objects.filter(target=backend.alias).exclude(desired_state="deleted")
        for service in services.select_related("team", "live_release"):
            ref = ServiceRef(service.team.name, service.name)
            known.add(ref)
            if service.live_release is None or service.live_release.status != Release.Status.LIVE:
                continue
            lock = deploy_lock(service.id)
            if not lock.acquire(blocking=False):
                logger.info("reconcile %s: skipped, a deploy holds its lock", ref.service)
                continue
            try:
                desired = DesiredService(deploy_spec(service, service.live_release), state=service.desired_state)
                for action in backend.reconcile_service(desired):
                    logger.info("reconcile %s: %s", ref.service, action)
            except RuntimeBackendError as exc:
                logger.warning("reconcile could not repair %s/%s: %s", ref.team, ref.service, exc.message)
            finally:
                lock.release()
        try:
            for action in backend.remove_strays(known):
                logger.info("reconcile: %s", action)
        except RuntimeBackendError as exc:
            logger.warning("reconcile could not remove strays on %s: %s", backend.alias, exc.message)
    sync_router()


@shared_task
def scale_idle_to_zero() -> None:
    """Notes the router's traffic, then puts services idle for longer than their
    idle minutes to sleep."""
    from hakobune.platform.services import scaling

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


@shared_task
def roll_up_metrics() -> None:
    from hakobune.platform.observability.collectors import roll_up

    roll_up()


@shared_task
def collect_metrics() -> None:
    from hakobune.platform.observability.collectors import collect_all

    collect_all()


@shared_task
def prune_images() -> None:
    """Keeps the images of each service's last KEEP_RELEASES releases (and the
    live one), so rollbacks stay instant, and removes older ones, each through
    the builder that made them."""
    for service in Service.objects.exclude(desired_state="deleted").select_related("team"):
        kept = set(service.releases.order_by("-number").values_list("image", flat=True)[: settings.KEEP_RELEASES])
        if service.live_release_id:
            kept.add(service.live_release.image)
        try:
            pruned = prune_service_images(service, kept)
        except BuildError as exc:
            logger.warning("could not prune the images of %s: %s", service, exc.message)
            continue
        for tag in pruned:
            logger.info("pruned %s", tag)


@shared_task
def sync_router() -> None:
    """Rewrites each backend's routing from the database, so a restarted router
    serves every live service again."""
    for backend in all_backends():
        services = (
            Service.objects.filter(target=backend.alias, live_release__isnull=False, public=True)
            .exclude(desired_state__in=("deleted", "stopped"))
            .select_related("team")
            .prefetch_related("domains")
        )
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
                    asleep=svc.desired_state == "sleeping",
                    aliases=svc.aliases,
                    keep_current=not free,
                )
            )
        try:
            backend.sync_routes(live)
        except RuntimeBackendError as exc:
            logger.warning("could not sync the routes of %s: %s", backend.alias, exc.message)
        finally:
            for lock in held:
                lock.release()


@shared_task
def fail_stalled_builds() -> None:
    """A build whose worker died mid-step never moves again; tell its owner."""
    cutoff = timezone.now() - timedelta(seconds=settings.BUILD_TIMEOUT + 120)
    stalled = Build.objects.filter(status__in=IN_PROGRESS, status_changed_at__lt=cutoff)
    # A build waiting for an administrator waits for a person, not a worker.
    for build_id in stalled.exclude(status=BuildStatus.REVIEWING).values_list("id", flat=True):
        fail(build_id, "The build stopped making progress (the worker may have restarted). Deploy again.")


@shared_task
def destroy_service(service_id: int) -> None:
    service = Service.objects.select_related("team").filter(id=service_id, desired_state="deleted").first()
    if service is None:
        return
    with deploy_lock(service.id):
        backend_for(service).destroy(ServiceRef(service.team.name, service.name))
        prune_service_images(service)
        with transaction.atomic():
            # Releases protect their builds; they go first, then the service
            # with its builds, logs and webhook deliveries.
            Service.objects.filter(id=service.id).update(live_release=None)
            service.releases.all().delete()
            service.delete()


@shared_task
def rebuild_stack(language: str, user_id: int | None = None) -> None:
    """An admin's one action: build the language's stack afresh from Debian,
    then redeploy every live service built on it."""
    from django.contrib.auth import get_user_model

    from hakobune.platform.services.services import redeploy_services_on_stack

    stack = local_builder().rebuild_stack(language, lambda line: logger.info("stack %s: %s", language, line))
    user = get_user_model().objects.filter(id=user_id).first() if user_id else None
    builds = redeploy_services_on_stack(language=language, created_by=user)
    logger.info("stack %s rebuilt (%s); redeploying %d service(s)", language, stack.version, len(builds))
