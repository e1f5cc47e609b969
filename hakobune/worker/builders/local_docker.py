"""Builds images on this host's Docker Engine, on Hakobune's stacks: each stack
of the plan is found, pulled or built from Debian (stacks.py), the plan's
Dockerfile is written into the source (builder.py) and built with the build
limits, and the image is tagged by content, hakobune/<team>/<service>:<digest>.

OPTIONS (settings.IMAGE_BUILDERS["local"]["OPTIONS"]):
    docker_url                        the Docker Engine ("" = DOCKER_HOST or its socket)
    stack_images                      {language: registry image}; "" = Hakobune's own stack
    suite, mirror                     the Debian suite and mirror stacks are built from
    stack_variants                    {language: [variant, ...]}: further stacks for apps that ask for
                                      a version the default one lacks; a variant is a Debian suite
                                      (built like the default, e.g. "trixie") or an image ("python:3.13-slim")
    ca_bundle                         a CA bundle copied into stacks and builds ("" = none)
    stack_cache_dir                   where built stacks' root filesystems are kept
    timeout                           seconds a build may take (the watch stops it then)
    memory_mb, cpu_shares, cpuset_cpus  the limits of each build step (memory: of the whole build too)
    instance                          the label of this Hakobune on the build network it makes
    network                           the Docker network build steps run on ("hakobune-builds"),
                                      isolated like a team network; "none": no network at all;
                                      "": the engine's default bridge, unconfined (never on a shared host)
    firewall                          "iptables" (the build network's rules) or "off"
    cgroup_parent                     the cgroup builds run in, one cgroup each ("/hakobune-builds");
                                      "": none, and then no pids limit nor disk watch
    pids_limit                        processes (threads) one build may have at once
    disk_mb                           what one build's steps may write to their layers (0: no watch)
    watch_seconds                     how often a running build is looked at
    allowed_base_images               patterns of images a person's Dockerfile may build on beside
                                      the stacks and the team's own ("python:*", "docker.io/library/*")
    package_sources                   {"pip", "npm", "rubygems", "composer": URL}: the mirrors the
                                      plans' install steps use ("" = the public source; package_sources.py)

A person's own Dockerfile is checked first (dockerfile_policy.py); the build
then runs confined (confinement.py). Nothing here knows Django."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound

from hakobune.runtime.firewall import Firewall
from hakobune.worker import builder, package_sources, stacks
from hakobune.worker.buildpacks import multi, versions
from hakobune.worker.buildpacks.plan import BuildPlan

from . import confinement, dockerfile_policy
from .base import BuildError, BuildRequest, BuiltImage, ImageBuilder

Log = Callable[[str], None]


def service_repository(team: str, service: str) -> str:
    return f"hakobune/{team}/{service}"


def stack_refs(stack_images: dict[str, str], suite: str = "bookworm") -> dict[str, str]:
    """The image each stack is named by in a Dockerfile a person builds
    themselves: the configured registry image, else Hakobune's locally built
    one (hakobune/stack-<language>:<suite>)."""
    languages = set(stack_images) | set(stacks.RECIPES)
    return {
        language: (stack_images.get(language) or "").strip() or stacks.local_stack_ref(language, suite)
        for language in sorted(languages)
    }


class LocalDockerBuilder(ImageBuilder):
    capabilities = frozenset({"local_images", "stacks"})

    def __init__(self, alias: str, **options):
        super().__init__(alias, **options)
        self.docker_url = options.get("docker_url") or ""
        self.stack_images = dict(options.get("stack_images") or {})
        self.suite = options.get("suite") or "bookworm"
        self.stack_variants = {language: [v.strip() for v in variants if v.strip()]
                               for language, variants in dict(options.get("stack_variants") or {}).items()}
        self.mirror = options.get("mirror") or "http://deb.debian.org/debian"
        self.ca_bundle = options.get("ca_bundle") or None
        self.stack_cache_dir = Path(options.get("stack_cache_dir") or "var/stacks")
        self.timeout = int(options.get("timeout") or 900)
        self.memory_mb = int(options.get("memory_mb") or 2048)
        self.cpu_shares = int(options.get("cpu_shares") or 0)
        self.cpuset_cpus = options.get("cpuset_cpus") or ""
        # Confinement (confinement.py).
        self.instance = options.get("instance") or "hakobune"
        self.network = options.get("network", "hakobune-builds") or ""
        isolated = options.get("firewall", "iptables") != "off" and self.network not in ("", "none")
        self.firewall = Firewall() if isolated else None
        self.cgroup_parent = options.get("cgroup_parent", "/hakobune-builds") or ""
        self.cgroup_fs = options.get("cgroup_fs") or confinement.CGROUP_FS
        self.pids_limit = int(options.get("pids_limit") or 1024)
        self.disk_mb = int(options.get("disk_mb", 10240) or 0)
        self.watch_seconds = float(options.get("watch_seconds") or 2)
        # The Dockerfile policy (dockerfile_policy.py); by default, the registry images of the stacks.
        allowed = options.get("allowed_base_images")
        if allowed is None:
            allowed = [_repository(image) + ":*" for image in self.stack_images.values() if (image or "").strip()]
        self.allowed_base_images = dockerfile_policy.AllowedImages(dockerfile_policy.allowed_patterns(allowed))
        self.package_sources = {name: (url or "").strip()
                                for name, url in dict(options.get("package_sources") or {}).items()}
        self._client: docker.DockerClient | None = None
        self._data_root: str | None = None

    # -- the engine ---------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """This builder's own client, made on first use (so each worker process
        makes its own)."""
        if self._client is None:
            try:
                if self.docker_url:
                    self._client = docker.DockerClient(base_url=self.docker_url, timeout=self.timeout)
                else:
                    self._client = docker.from_env(timeout=self.timeout)
            except (DockerException, requests.RequestException) as exc:
                raise BuildError(
                    f"the Docker Engine does not answer{f' at {self.docker_url}' if self.docker_url else ''}: {exc}",
                    user_error=False, transient=True,
                ) from exc
        return self._client

    def stack_refs(self, plan: BuildPlan | None = None) -> dict[str, str]:
        """{language: image} a Dockerfile made from a plan starts FROM (for
        "eject"): the configured image, else Hakobune's locally built stack;
        with `plan`, the variant it was built on (stack_variant)."""
        refs = stack_refs(self.stack_images, self.suite)
        if plan is not None and plan.stack_variant:
            language = versions.language_of(plan)
            variant = plan.stack_variant
            refs[language] = variant if _is_image(variant) else stacks.local_stack_ref(language, variant)
        return refs

    # -- building -------------------------------------------------------------------

    def build(self, request: BuildRequest, log: Log) -> BuiltImage:
        with engine_errors():
            return self._build(request, log)

    def _build(self, request: BuildRequest, log: Log) -> BuiltImage:
        plan = request.plan
        client = self.client
        language = versions.language_of(plan)
        images = {name: self._resolve(name, log, variant=plan.stack_variant if name == language else "")
                  for name in plan.stacks}
        run_image = images.get(plan.stack)
        build_stack_image = images.get(plan.build_stack) if plan.build_stack else None
        if plan.build_stack:
            log(f"Building on {build_stack_image.ref} ({build_stack_image.version}), "
                f"running on {run_image.ref} ({run_image.version})")
        elif run_image:
            log(f"Building on {run_image.ref} ({run_image.version})")
        else:
            log(f"Building with your {plan.dockerfile_path}")
        _warn_language_version(plan, build_stack_image or run_image, log)
        plan = plan.with_changes(
            stack_version=run_image.version if run_image else "",
            build_stack_version=build_stack_image.version if build_stack_image else "",
        )
        mirrors = package_sources.build_env(self.package_sources)
        if mirrors and not plan.uses_own_dockerfile:
            plan = plan.with_changes(build_env={**plan.build_env, **mirrors})
        run_ref = run_image.ref if run_image else ""
        dockerfile = builder.prepare_context(
            request.source_dir, plan, run_ref, self.ca_bundle,
            build_image=build_stack_image.ref if build_stack_image else None,
        )
        if plan.uses_own_dockerfile:
            self.check_dockerfile(request, dockerfile, log)
        stack_ids = tuple(client.images.get(image.ref).id for image in images.values())
        tag = builder.image_tag(
            request.team, request.service, request.source_digest, plan, run_ref, base_image_ids=stack_ids
        )
        with self.confined(request) as (network, cgroup, watch):
            image = builder.build_image(
                client,
                request.source_dir,
                dockerfile,
                tag,
                log=log,
                timeout=self.timeout,
                memory_mb=self.memory_mb,
                cpu_shares=self.cpu_shares,
                cpuset_cpus=self.cpuset_cpus,
                plan=plan,
                network_mode=network,
                cgroup_parent=cgroup.path if cgroup else "",
                watch=watch,
                package_sources=self.package_sources,
            )
        return BuiltImage(ref=image.ref, plan=plan)

    # -- confinement -------------------------------------------------------------------

    def check_dockerfile(self, request: BuildRequest, dockerfile: str, log: Log) -> list[str]:
        """Refuses (a user's BuildError, in a sentence) what the person's own
        Dockerfile may not ask of this engine; returns the images it builds on."""
        text = dockerfile_policy.read_dockerfile(request.source_dir, dockerfile)
        policy = dockerfile_policy.Policy(
            team=request.team,
            stacks=tuple(self.stack_refs().values()),
            allowed=self.allowed_base_images,
            is_own_image=lambda ref: self._is_teams_image(request.team, ref),
            triggers_of=self._onbuild_triggers,
        )
        bases = dockerfile_policy.check(text, policy, build_args=request.plan.build_args, path=dockerfile)
        if bases:
            log(f"Your {dockerfile} builds on {', '.join(bases)}")
        return bases

    def _is_teams_image(self, team: str, ref: str) -> bool:
        try:
            image = self.client.images.get(ref)
        except (ImageNotFound, APIError):
            return False
        return any(tag.startswith(f"hakobune/{team}/") for tag in image.tags)

    def _onbuild_triggers(self, ref: str) -> list[str]:
        try:
            image = self.client.images.get(ref)
        except (ImageNotFound, APIError):
            return []
        return list((image.attrs.get("Config") or {}).get("OnBuild") or [])

    @contextmanager
    def confined(self, request: BuildRequest) -> Iterator[tuple]:
        """The build's network (made and isolated), its cgroup (made with its
        limits, removed afterwards) and its watch (running meanwhile)."""
        network = None
        if self.network:
            network = confinement.ensure_build_network(self.client, self.network, instance=self.instance,
                                                       firewall=self.firewall)
        cgroup = None
        if self.cgroup_parent:
            cgroup = confinement.BuildCgroup.for_build(self.cgroup_parent, request.team, build_id=request.build_id,
                                                       fs_root=self.cgroup_fs)
            cgroup.prune_stale(max_age=2 * self.timeout + 600)
            confinement.end_earlier_attempt(self.client, cgroup, request.workspace)
            cgroup.create(pids_max=self.pids_limit, memory_bytes=self.memory_mb * 1024 * 1024)
        try:
            with confinement.BuildWatch(self.client, cgroup, timeout=self.timeout, disk_mb=self.disk_mb,
                                        poll=self.watch_seconds, should_stop=request.should_stop) as watch:
                yield network, cgroup, watch
        finally:
            if cgroup is not None:
                cgroup.remove()

    def stop(self, team: str, build_id: int) -> int:
        """Kills the running step containers of the build, found in its
        cgroups (confinement.BuildCgroup.of_build); without cgroups there is
        nothing to find them by, and the build's own watch stops them."""
        if not self.cgroup_parent or not build_id:
            return 0
        killed = 0
        for cgroup in confinement.BuildCgroup.of_build(self.cgroup_parent, team, build_id, fs_root=self.cgroup_fs):
            for container in cgroup.container_ids():
                try:
                    self.client.api.kill(container)
                    killed += 1
                except (APIError, DockerException):
                    pass  # it ended by itself meanwhile
        return killed

    def _resolve(self, language: str, log: Log, *, variant: str = "") -> stacks.StackImage:
        """A stack the plan builds on (a two-stage plan needs two), found,
        pulled or built from Debian; `variant` names one of stack_variants."""
        if not variant:
            return stacks.resolve_stack(
                self.client, language, self.stack_images.get(language, ""), log=log, **self._stack_settings()
            )
        if variant not in self.stack_variants.get(language, []):
            raise stacks.StackError(f"The {language} stack {variant!r} this build was planned on is no longer "
                                    "configured (STACK_VARIANTS); deploy again.")
        if _is_image(variant):
            if not stacks.image_present(self.client, variant):
                pulled, why = stacks.pull_image(self.client, variant, log=log)
                if not pulled:
                    raise stacks.StackError(f"No base image for {language} ({variant}, from STACK_VARIANTS): it is "
                                            f"not on this host and could not be pulled ({why}).")
            return stacks.StackImage(language, variant, "registry", stacks.stack_version(self.client, variant))
        return stacks.resolve_stack(self.client, language, "", log=log, **{**self._stack_settings(), "suite": variant})

    def stack_offers(self, language: str) -> list[versions.StackOffer]:
        """The default stack of `language` and its configured variants, with
        the version each has (of each of its languages, for a stack of more
        than one): read from the image when this host has it, else what the
        Debian suite carries (SUITE_VERSIONS) or the image's tag says; ""
        when it cannot be told before building."""
        parts = multi.COMBINED.get(language, (language,))
        offers = []
        with engine_errors():
            for variant in ["", *self.stack_variants.get(language, [])]:
                if _is_image(variant):
                    ref, found = variant, self._image_versions(variant, parts)
                else:
                    suite = variant or self.suite
                    local = stacks.local_stack_ref(language, suite)
                    configured = "" if variant else (self.stack_images.get(language) or "").strip()
                    if configured and stacks.image_present(self.client, configured):
                        ref, found = configured, self._image_versions(configured, parts)
                    elif stacks.image_present(self.client, local):
                        description = stacks.stack_version(self.client, local)
                        ref, found = local, {part: stacks.language_version(description, part) for part in parts}
                    elif configured:
                        # Pulled if the registry answers, else built from Debian: not known yet.
                        ref, found = configured, dict.fromkeys(parts, "")
                    else:
                        ref, found = local, {part: stacks.SUITE_VERSIONS.get(suite, {}).get(part, "") for part in parts}
                combined = tuple(found.items()) if len(parts) > 1 else ()
                offers.append(versions.StackOffer(language, variant, "" if combined else found[language], ref,
                                                  versions=combined))
        return offers

    def _image_versions(self, ref: str, languages: tuple[str, ...]) -> dict[str, str]:
        if stacks.image_present(self.client, ref):
            description = stacks.stack_version(self.client, ref)
            return {language: stacks.language_version(description, language) for language in languages}
        # Not pulled yet: the version its tag says (python:3.13-slim), if any, of a stack of one language.
        tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else ""
        match = re.match(r"^(\d+\.\d+(?:\.\d+)?)", tag)
        return {language: match.group(1) if match and len(languages) == 1 else "" for language in languages}

    def _stack_settings(self) -> dict:
        return {"suite": self.suite, "mirror": self.mirror, "ca_bundle": self.ca_bundle,
                "cache_dir": self.stack_cache_dir}

    # -- stacks ---------------------------------------------------------------------

    def ensure_stack(self, language: str, log: Log, *, allow_pull: bool = True) -> stacks.StackImage:
        """The language's stack: the configured image if this host has it or can
        pull it, else Hakobune's own, built from Debian when missing."""
        with engine_errors():
            return stacks.resolve_stack(
                self.client, language, self.stack_images.get(language, ""), allow_pull=allow_pull,
                allow_build=True, log=log, **self._stack_settings(),
            )

    def rebuild_stack(self, language: str, log: Log, *, use_cache: bool = False) -> stacks.StackImage:
        """Builds hakobune/stack-<language>:<suite> afresh from Debian (with
        `use_cache`, re-imports the kept root filesystem instead)."""
        if language not in stacks.RECIPES:
            known = ", ".join(sorted(stacks.RECIPES))
            raise stacks.StackError(f"Hakobune cannot build a {language!r} stack locally; it can build: {known}.")
        with engine_errors():
            return stacks.build_local_stack(
                self.client, language, use_cache=use_cache, force=True, log=log, **self._stack_settings()
            )

    # -- housekeeping ---------------------------------------------------------------

    def remove_images(self, team: str, service: str, *, keep: set[str] = frozenset()) -> list[str]:
        """Removes the service's images except those in `keep`; returns the tags
        removed. An image a container still uses stays."""
        removed = []
        repository = service_repository(team, service)
        with engine_errors():
            found = self.client.images.list(name=repository)
        for image in found:
            # An image built identically for another service carries its tags too.
            for tag in image.tags:
                if tag in keep or not tag.startswith(f"{repository}:"):
                    continue
                try:
                    self.client.images.remove(tag, noprune=False)
                    removed.append(tag)
                except (APIError, ImageNotFound):
                    pass
        return removed

    def prune_leftovers(self, older_than_hours: int) -> int:
        """`docker image prune` and `docker builder prune` for what Hakobune's
        builds left: untagged images carrying its label (a redeploy's image
        once its tag was pruned, the layers of a failed build) and BuildKit's
        cache, each unused for `older_than_hours`. Images of other tools on
        the engine are never touched; tagged images are the release policy's
        (remove_images)."""
        until = f"{int(older_than_hours)}h"
        freed = 0
        with engine_errors():
            result = self.client.api.prune_images(
                filters={"dangling": True, "until": until, "label": builder.MANAGED_LABEL})
            freed += int(result.get("SpaceReclaimed") or 0)
            try:
                result = self.client.api.prune_builds(filters={"until": until})
                freed += int(result.get("SpaceReclaimed") or 0)
            except APIError as exc:
                # An engine without BuildKit has no build cache to prune.
                if exc.status_code != 404:
                    raise
        return freed

    def data_root(self) -> str:
        if self._data_root is None:
            with engine_errors():
                self._data_root = self.client.info().get("DockerRootDir") or ""
        return self._data_root

    def disk_usage(self) -> dict:
        """{"data_root", "images", "images_bytes", "dangling_images",
        "build_cache_bytes", "volumes", "volumes_bytes"}: `docker system df`
        in one call, and where the engine keeps its data."""
        with engine_errors():
            info = self.client.info()
            usage = self.client.df()
        images = usage.get("Images") or []
        volumes = usage.get("Volumes") or []
        return {
            "data_root": info.get("DockerRootDir") or "",
            "images": len(images),
            "images_bytes": int(usage.get("LayersSize") or 0),
            "dangling_images": sum(1 for image in images if not image.get("RepoTags") or
                                   image.get("RepoTags") == ["<none>:<none>"]),
            "build_cache_bytes": sum(int(entry.get("Size") or 0) for entry in usage.get("BuildCache") or []),
            "volumes": len(volumes),
            "volumes_bytes": sum(max(int((volume.get("UsageData") or {}).get("Size") or 0), 0) for volume in volumes),
        }


@contextmanager
def engine_errors():
    """Turns what the Docker SDK raises outside builder.py's own handling (the
    engine gone between two calls, a 500 while resolving a stack) into
    BuildError, transient when trying again can help."""
    try:
        yield
    except BuildError:
        raise
    except APIError as exc:
        if builder.engine_trouble(exc):
            raise BuildError(f"the Docker Engine failed: {exc.explanation or exc}", user_error=False,
                             transient=True) from exc
        raise BuildError(f"the Docker Engine refused: {exc.explanation or exc}", user_error=False) from exc
    except DockerException as exc:
        raise BuildError(f"the Docker Engine failed: {exc}", user_error=False, transient=True) from exc
    except (requests.RequestException, ConnectionError) as exc:
        raise BuildError(f"the Docker Engine cannot be reached: {exc}", user_error=False,
                         transient=builder.connection_lost(exc)) from exc


def _is_image(variant: str) -> bool:
    """A variant naming an image (python:3.13-slim, ghcr.io/acme/py) rather than a Debian suite."""
    return any(ch in variant for ch in ":/@")


def _repository(image: str) -> str:
    """python:3.12-slim -> python; ghcr.io/acme/base@sha256:... -> ghcr.io/acme/base."""
    name = image.strip().split("@", 1)[0]
    head, _, last = name.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def _warn_language_version(plan: BuildPlan, image: stacks.StackImage | None, log: Log) -> None:
    if plan.language_version and image is not None:
        have = stacks.language_version(image.version, image.language)
        if have and versions.satisfies(image.language, plan.language_version, have):
            log(f"  The app asks for {plan.language_version}; this stack has {image.version}.")
            return
        log(
            f"  The app asks for {plan.language_version}; this stack has {image.version}. "
            "If the build fails on the version, make the app work with this one or ask your operator for a newer stack."
        )
