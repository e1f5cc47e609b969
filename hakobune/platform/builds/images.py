"""Building a build's image on the service's builder: the local Docker Engine,
or the runtime's own builder (Cloud Build) for services that run there."""

from __future__ import annotations

import hashlib
from pathlib import Path

import docker
from django.conf import settings

from hakobune.platform.services.backends import backend_for
from hakobune.runtime.base import RuntimeBackendError
from hakobune.worker import builder, source, stacks
from hakobune.worker.buildpacks import BuildPlan

from .log import BuildLog


def build(build, plan: BuildPlan, src: Path, workspace: Path, log: BuildLog) -> tuple[str, BuildPlan]:
    """Builds the image; returns its reference and the plan as built."""
    remote = _remote_builder(build.service)
    if remote is not None:
        return _build_remotely(build, plan, src, workspace, remote, log), plan
    client = docker.from_env(timeout=settings.BUILD_TIMEOUT)
    found = _resolve_stacks(client, plan, log)
    run_image = found.get(plan.stack)
    build_stack_image = found.get(plan.build_stack) if plan.build_stack else None
    if plan.build_stack:
        log.write(f"Building on {build_stack_image.ref} ({build_stack_image.version}), "
                  f"running on {run_image.ref} ({run_image.version})")
    elif run_image:
        log.write(f"Building on {run_image.ref} ({run_image.version})")
    else:
        log.write(f"Building with your {plan.dockerfile_path}")
    _warn_language_version(plan, build_stack_image or run_image, log)
    plan = plan.with_changes(
        stack_version=run_image.version if run_image else "",
        build_stack_version=build_stack_image.version if build_stack_image else "",
    )
    run_ref = run_image.ref if run_image else ""
    dockerfile = builder.prepare_context(
        src, plan, run_ref, settings.BUILD_CA_BUNDLE or None,
        build_image=build_stack_image.ref if build_stack_image else None,
    )
    stack_ids = tuple(client.images.get(image.ref).id for image in found.values())
    tag = builder.image_tag(
        build.service.team.name, build.service.name, build.source_digest, plan, run_ref, base_image_ids=stack_ids
    )
    image = builder.build_image(
        client, src, dockerfile, tag, log=log.write, timeout=settings.BUILD_TIMEOUT,
        memory_mb=settings.BUILD_MEMORY_MB, cpu_shares=getattr(settings, "BUILD_CPU_SHARES", 0),
        cpuset_cpus=getattr(settings, "BUILD_CPUSET_CPUS", ""), plan=plan,
    )
    return image.ref, plan


def _resolve_stacks(client, plan: BuildPlan, log: BuildLog) -> dict[str, stacks.StackImage]:
    """Every stack the plan builds on (a two-stage plan needs two), found,
    pulled or built from Debian."""
    return {
        name: stacks.resolve_stack(
            client, name, settings.STACK_IMAGES.get(name, ""), suite=settings.STACK_DEBIAN_SUITE,
            mirror=settings.STACK_DEBIAN_MIRROR, ca_bundle=settings.BUILD_CA_BUNDLE or None,
            cache_dir=settings.STACK_CACHE_DIR, log=log.write,
        )
        for name in plan.stacks
    }


def _warn_language_version(plan: BuildPlan, image, log: BuildLog) -> None:
    if plan.language_version and image is not None:
        log.write(
            f"  The app asks for {plan.language_version}; this stack has {image.version}. "
            "If the build fails on the version, make the app work with this one or ask your operator for a newer stack."
        )


def _remote_builder(service):
    """The service's backend when it builds images itself (Cloud Build), else None."""
    try:
        backend = backend_for(service)
    except RuntimeBackendError:
        return None
    return backend if "remote_build" in backend.capabilities else None


def _build_remotely(build, plan: BuildPlan, src: Path, workspace: Path, backend, log: BuildLog) -> str:
    service = build.service
    chosen = service.cloud_builder or getattr(backend, "builder", "dockerfile")
    dockerfile = None
    if chosen == "buildpacks":
        log.write(f"Building with {backend.alias}'s buildpacks, as the service's settings ask (the plan is not used)")
    elif not plan.uses_own_dockerfile:
        refs = {name: settings.STACK_IMAGES.get(name, "") for name in plan.stacks}
        missing = [name for name, ref in refs.items() if not ref]
        if missing:
            raise RuntimeBackendError(
                f"the {missing[0]} stack has no registry image, so {backend.alias} cannot build on it: "
                f"set STACK_{missing[0].upper()}_IMAGE to an image a remote builder can pull, "
                "or choose the buildpacks builder in the service's settings."
            )
        dockerfile = plan.dockerfile(refs[plan.stack], build_image=refs.get(plan.build_stack) or None)
        log.write(f"Building on {refs[plan.stack]} in {backend.alias}")
    archive = workspace / "remote-source.tar.gz"
    source.pack_tree(src, archive)
    recipe = f"{chosen}\0{service.start_command}" if chosen == "buildpacks" else (dockerfile or plan.dockerfile_path)
    tag = hashlib.sha256(f"{build.source_digest}\0{recipe}".encode()).hexdigest()[:16]
    return backend.build(
        archive, dockerfile, f"{service.team.name}/{service.name}:{tag}", log.write,
        dockerfile_path=plan.dockerfile_path or "Dockerfile", buildpacks=chosen == "buildpacks",
        start_command=service.start_command,
    )
