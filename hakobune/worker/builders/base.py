"""The image builder interface. A builder turns an app's source and its build
plan into an image a runtime can run (on this host's Docker Engine, in Cloud
Build, …). Like the runtime backends (hakobune.runtime.base), builders are
chosen by alias with options, say what they can do in capability flags, take
and return plain values, and know nothing of Django.

Every failure of a build is a `BuildError`, which says three things: what went
wrong in words (`message`, plus the last lines of the build's output in
`log_tail`), whose fault it is (`user_error`: the app's own build failed), and
whether trying again unchanged can help (`transient`: an engine, registry or
API could not be reached or answered 5xx/429)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hakobune.worker.buildpacks.plan import BuildPlan

# What BuildRequest.mode may be.
PLAN = "plan"  # Hakobune's recipe (the plan's generated Dockerfile) or the app's own Dockerfile
BUILDPACKS = "buildpacks"  # the builder's own buildpacks (capability "buildpacks")
MODES = (PLAN, BUILDPACKS)


class BuildError(Exception):
    """The image could not be built.

    `message` says why in words a person can act on; `log_tail` holds the last
    lines the build printed. `user_error` is True when the app's own build
    failed (a RUN step exited non-zero, a Dockerfile Hakobune cannot follow)
    and False when the platform did (no stack, an engine or API that failed).
    `transient` is True when trying again unchanged can help: the Docker
    Engine, a registry or a Google API could not be reached, answered 5xx or
    429, or the connection was reset."""

    def __init__(self, message: str, *, log_tail: list[str] | None = None, user_error: bool = True,
                 transient: bool = False):
        super().__init__(message)
        self.message = message
        self.log_tail = list(log_tail or [])
        self.user_error = user_error
        self.transient = transient


@dataclass(frozen=True)
class BuildRequest:
    team: str
    service: str
    source_dir: Path  # the app's unpacked folder
    source_digest: str
    plan: BuildPlan
    workspace: Path  # this build's scratch folder (the platform removes it afterwards)
    mode: str = PLAN  # "plan" or "buildpacks" (see MODES)
    start_command: str = ""  # the service's own start command, for builders that take one (buildpacks)
    # Google Cloud's buildpack settings among the service's variables (GOOGLE_ENTRYPOINT,
    # GOOGLE_RUNTIME_VERSION, GOOGLE_BUILDABLE), for builders with buildpacks.
    build_env: dict = field(default_factory=dict)
    build_id: int = 0  # names what the build runs, so that `ImageBuilder.stop` finds it from another process
    # Asked now and then while the build runs: True when the build was cancelled
    # or superseded, and its running step is to be stopped.
    should_stop: Callable[[], bool] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class BuiltImage:
    ref: str  # what a runtime runs: a local tag, or a registry image by digest
    plan: BuildPlan  # the plan as built (stack versions filled in)


class ImageBuilder:
    """Base class. Subclasses implement `build` and say what else they can do
    in `capabilities`, so the platform never asks which builder it holds."""

    # The flags in use: buildpacks (builds with its own buildpacks, mode
    # "buildpacks"), local_images (its images are on this host's Docker
    # Engine), stacks (builds on Hakobune's stacks, which it can find, pull
    # or build: ensure_stack, rebuild_stack).
    capabilities: frozenset[str] = frozenset()
    # The mode a service that chose none builds with.
    default_mode: str = PLAN

    def __init__(self, alias: str, **options):
        self.alias = alias
        self.options = options

    def build(self, request: BuildRequest, log: Callable[[str], None]) -> BuiltImage:
        """Builds the request's source into an image, passing the build's output
        to `log` line by line. Raises BuildError."""
        raise NotImplementedError

    def stack_offers(self, language: str) -> list | None:
        """The stacks this builder can build `language` apps on, with the
        language version each carries (buildpacks.versions.StackOffer), the
        default first; None when it cannot tell before building (then the
        version an app asks for is not checked at detection)."""
        return None

    def remove_images(self, team: str, service: str, *, keep: set[str] = frozenset()) -> list[str]:
        """Removes the images this builder made for the service, except `keep`;
        returns what went. Builders that keep no images do nothing."""
        return []

    def stop(self, team: str, build_id: int) -> int:
        """Stops what the build `build_id` (BuildRequest.build_id) still runs,
        from any process on the builder's host; returns how many running
        steps it stopped. Builders with nothing to stop do nothing."""
        return 0

    def prune_leftovers(self, older_than_hours: int) -> int:
        """Removes what builds left behind and nothing needs (untagged images
        of this builder's builds, the engine's build cache) unused for
        `older_than_hours`; returns the bytes freed. Builders that keep
        nothing on this host free nothing."""
        return 0

    def disk_usage(self) -> dict | None:
        """What this builder's engine holds on disk, for the administrators'
        page (see LocalDockerBuilder.disk_usage); None: nothing on this host."""
        return None

    def data_root(self) -> str:
        """The folder this builder's engine keeps images and build cache in,
        on this host; "": none here."""
        return ""
