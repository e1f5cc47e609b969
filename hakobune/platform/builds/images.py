"""Which image builder makes a service's images, and what it is asked.

A service's runtime backend builds its images itself when it has to (Cloud
Run: Cloud Build, pushing to Artifact Registry; RuntimeBackend.image_builder);
otherwise the platform's builder, settings.IMAGE_BUILDERS["local"], builds
them on this host's Docker Engine. Builders are resolved like the runtime
backends (hakobune.platform.services.backends): {alias: {BACKEND, OPTIONS}},
made once per process and forgotten when the setting changes."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from hakobune.platform.services.backends import backend_for
from hakobune.runtime.base import RuntimeBackendError
from hakobune.worker.builders.base import BUILDPACKS, PLAN, BuildRequest, ImageBuilder
from hakobune.worker.buildpacks.plan import BuildPlan

_builders: dict[str, ImageBuilder] = {}


def get_builder(alias: str = "local") -> ImageBuilder:
    """The platform's builder configured as `alias` in IMAGE_BUILDERS."""
    if alias not in _builders:
        config = settings.IMAGE_BUILDERS[alias]
        _builders[alias] = import_string(config["BACKEND"])(alias, **config.get("OPTIONS", {}))
    return _builders[alias]


def local_builder() -> ImageBuilder:
    """The builder on this host's Docker Engine: its stacks (the `stack`
    command, the staff's "rebuild stack") and the services that run here."""
    return get_builder("local")


def builder_for(service) -> ImageBuilder:
    """The builder of `service`'s images: its runtime backend's own, else the
    platform's. A target that is not configured builds locally (its deploy
    then says what is missing)."""
    try:
        own = backend_for(service).image_builder()
    except RuntimeBackendError:
        own = None
    return own if own is not None else local_builder()


def build_request_for(build, plan: BuildPlan, source_dir: Path, workspace: Path, *, should_stop=None) -> BuildRequest:
    """What `build` asks its service's builder to make: the plan (or, where
    the builder has buildpacks and the service or the builder's default
    chooses them, the builder's buildpacks)."""
    service = build.service
    builder = builder_for(service)
    mode = PLAN
    if "buildpacks" in builder.capabilities:
        chosen = service.cloud_builder or builder.default_mode
        mode = BUILDPACKS if chosen == BUILDPACKS else PLAN
    return BuildRequest(
        team=service.team.name,
        service=service.name,
        source_dir=Path(source_dir),
        source_digest=build.source_digest,
        plan=plan,
        workspace=Path(workspace),
        mode=mode,
        start_command=service.start_command,
        build_env=google_build_env(service),
        build_id=build.id or 0,
        should_stop=should_stop,
    )


def google_build_env(service) -> dict[str, str]:
    """The service's variables named like Google Cloud's buildpack settings
    (GOOGLE_*): build settings as well as the app's environment."""
    from hakobune.platform.services.releases import env_of

    return {key: value for key, value in env_of(service).items() if key.startswith("GOOGLE_")}


def prune_service_images(service, keep: set[str] = frozenset()) -> list[str]:
    """Removes the images of `service` but those in `keep`, through the builder
    that made them (never this host's Docker Engine for a Cloud Run service);
    returns what went."""
    return builder_for(service).remove_images(service.team.name, service.name, keep=set(keep))


def _forget_builders(*, setting, **kwargs):
    if setting == "IMAGE_BUILDERS":
        _builders.clear()


setting_changed.connect(_forget_builders)
