"""Builds an app's image on the local Docker Engine from its plan, streaming the
build's output line by line. Images are tagged by content, so building the
same source with the same plan again is a no-op.

Its failures are BuildError (hakobune.worker.builders.base), importable from
here too: `user_error` for the app's own build steps, `transient` for an
engine that could not be reached or answered 5xx."""

from __future__ import annotations

import hashlib
import re
import stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import requests
import urllib3
from docker.errors import APIError, DockerException, ImageNotFound

from . import treefs
from .builders import confinement
from .builders.base import BuildError
from .buildpacks.plan import GENERATED_DIR, BuildPlan
from .logcap import LineSplitter
from .package_sources import PackageSourceUnreachable, Unreachable, unreachable

TAIL_LINES = 30
MANAGED_LABEL = "org.hakobune.managed"
# Written into the build context when the app has no .dockerignore of its own:
# what is installed in the image is never copied over it from the upload.
DEFAULT_DOCKERIGNORE = """\
.git
node_modules
.venv
venv
__pycache__
*.pyc
.pytest_cache
.mypy_cache
.DS_Store
"""
# What the build reads of the app's and the administrator's files, at most.
MAX_DOCKERIGNORE_BYTES = 64 * 1024
MAX_CA_BUNDLE_BYTES = 16 * 1024 * 1024
STEP = re.compile(r"^Step (?P<number>\d+)/(?P<total>\d+) : (?P<instruction>.*)$")


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    id: str
    reused: bool


def image_tag(team: str, service: str, source_digest: str, plan: BuildPlan, base_image: str,
              *, base_image_ids: tuple[str, ...] = ()) -> str:
    """hakobune/<team>/<service>:<digest of source, plan and base image(s)>.
    `base_image_ids` (the stacks' image ids) make a rebuilt stack give new tags."""
    content = hashlib.sha256()
    content.update(source_digest.encode())
    content.update(repr(sorted(plan.to_dict().items())).encode())
    content.update(base_image.encode())
    for image_id in base_image_ids:
        content.update(image_id.encode())
    return f"hakobune/{team}/{service}:{content.hexdigest()[:16]}"


def prepare_context(src: Path, plan: BuildPlan, base_image: str, ca_bundle: str | None,
                    *, build_image: str | None = None) -> str:
    """Writes the generated Dockerfile (and the CA bundle, when configured) into
    the build context; returns the Dockerfile's path relative to it. An app with
    its own Dockerfile gets it back as it is. Nothing here follows a link of the
    app's folder (see treefs): a linked .hakobune, Dockerfile or .dockerignore
    fails the build with a sentence."""
    try:
        with_ca = bool(ca_bundle) and Path(ca_bundle).is_file()
        treefs.make_folder(src, GENERATED_DIR)
        if with_ca:
            with open(ca_bundle, "rb") as bundle:  # the administrator's file, not the app's
                certificates = bundle.read(MAX_CA_BUNDLE_BYTES + 1)
            if len(certificates) > MAX_CA_BUNDLE_BYTES:
                raise BuildError(f"the CA bundle {ca_bundle} (BUILD_CA_BUNDLE) is larger than "
                                 f"{MAX_CA_BUNDLE_BYTES // 2**20} MiB; point it at a certificate bundle.",
                                 user_error=False)
            treefs.write_file(src, f"{GENERATED_DIR}/ca-certificates.crt", certificates)
        _check_dockerignore(src, write_default=not plan.uses_own_dockerfile)
        if plan.uses_own_dockerfile:
            path = plan.dockerfile_path or "Dockerfile"
            if not treefs.is_plain_file(src, path):
                raise BuildError(f"{path} is not in the app's folder any more (or it is a link, which is not used).")
            return path
        text = plan.dockerfile(base_image, build_image=build_image, with_ca_bundle=with_ca)
        treefs.write_file(src, f"{GENERATED_DIR}/Dockerfile", _with_managed_label(text).encode())
    except treefs.UnsafePath as exc:
        raise BuildError(exc.message) from None
    return f"{GENERATED_DIR}/Dockerfile"


def _check_dockerignore(src: Path, *, write_default: bool) -> None:
    """The Docker SDK reads .dockerignore whole, following links: it must be a
    plain file of a sane size (or, for generated Dockerfiles, is written)."""
    info = treefs.lstat(src, ".dockerignore")
    if info is None:
        if write_default:
            treefs.write_file(src, ".dockerignore", DEFAULT_DOCKERIGNORE.encode())
        return
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise BuildError(
            "The app's .dockerignore is a link (or not a plain file). Hakobune does not follow links where it "
            "reads or writes its own files: make .dockerignore a plain file and deploy again."
        )
    if info.st_size > MAX_DOCKERIGNORE_BYTES:
        raise BuildError(
            f"The app's .dockerignore is {info.st_size:,} bytes; Hakobune takes one of up to "
            f"{MAX_DOCKERIGNORE_BYTES // 1024} kB. Keep it to the patterns of what to leave out."
        )


def _with_managed_label(dockerfile: str) -> str:
    """The platform's label, as a step right after the last FROM: there it comes
    from the cache on a code-only change (a label given to the build API is a
    step of its own after the code, which costs a container each time)."""
    lines = dockerfile.splitlines()
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    lines.insert(last_from + 1, f"LABEL {MANAGED_LABEL}=true")
    return "\n".join(lines) + "\n"


def build_image(
    client: docker.DockerClient,
    context: Path,
    dockerfile: str,
    tag: str,
    *,
    log: Callable[[str], None],
    timeout: int = 900,
    memory_mb: int = 2048,
    cpu_shares: int = 0,
    cpuset_cpus: str = "",
    plan: BuildPlan | None = None,
    nocache: bool = False,
    network_mode: str | None = None,
    cgroup_parent: str = "",
    watch=None,
    package_sources: dict[str, str] | None = None,
) -> BuiltImage:
    """Builds `tag` from the context, unless an image of that tag exists. Each
    RUN step runs with `memory_mb` of memory (no swap), `cpu_shares` relative CPU
    weight and on `cpuset_cpus` (e.g. "0-1"); the whole build stops after
    `timeout` seconds. With the `plan`, a failing step is named in the error as
    the install or the build step. Steps run on the `network_mode` network and
    inside the `cgroup_parent` cgroup (builders/confinement.py); a `watch` that
    stopped the build says why (`why_stopped()`). A step that failed because
    its package source did not answer (`package_sources`: the host's mirrors)
    is said so (package_sources.py)."""
    try:
        image = client.images.get(tag)
        log(f"An image of this exact source and plan exists already ({tag}); reusing it.")
        return BuiltImage(ref=tag, id=image.id, reused=True)
    except ImageNotFound:
        pass
    except DockerException as exc:
        raise BuildError(f"the Docker Engine does not answer: {exc}", user_error=False, transient=True)
    except (requests.RequestException, OSError) as exc:
        raise BuildError(f"the Docker Engine cannot be reached: {exc}", user_error=False, transient=True)

    tail: deque[str] = deque(maxlen=TAIL_LINES)
    image_id = None
    deadline = time.monotonic() + timeout
    memory = memory_mb * 1024 * 1024
    limits = {"memory": memory, "memswap": memory}
    if cpu_shares:
        limits["cpushares"] = int(cpu_shares)
    if cpuset_cpus:
        limits["cpusetcpus"] = cpuset_cpus
    current_step = ""
    try:
        stream = confinement.build_stream(
            client.api,
            cgroup_parent=cgroup_parent,
            network_mode=network_mode,
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            nocache=nocache,
            decode=True,
            # With a watch, the watch stops the build at its time (and says so);
            # the read timeout is then only a backstop.
            timeout=timeout + 60 if watch is not None else timeout,
            container_limits=limits,
            buildargs=dict(plan.build_args) if plan and plan.build_args else None,
            # Generated Dockerfiles carry the label themselves (prepare_context).
            labels={MANAGED_LABEL: "true"} if plan is None or plan.uses_own_dockerfile else None,
        )
        # Output without newlines is cut as it comes, so a step that prints
        # gigabytes on one line holds at most one line's worth here.
        lines_of = LineSplitter()
        for chunk in stream:
            if "error" in chunk:
                message = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                for line in message.splitlines():
                    tail.append(line)
                stopped = watch.why_stopped() if watch is not None else None
                source = None if stopped else _unreachable_source(tail, current_step, plan, package_sources)
                if source is not None:
                    raise PackageSourceUnreachable(source, log_tail=list(tail))
                error = BuildError(stopped or explain_failure(message, current_step, plan, memory_mb=memory_mb),
                                   log_tail=list(tail))
                oom = None if stopped else out_of_memory(message, current_step, memory_mb)
                if oom:
                    error.rule, error.params = "build.out_of_memory", oom
                raise error
            if "stream" in chunk:
                for line in lines_of.feed(chunk["stream"]):
                    if line.strip():
                        step = STEP.match(line)
                        if step:
                            current_step = step["instruction"]
                        tail.append(line)
                        log(line)
            if chunk.get("aux", {}).get("ID"):
                image_id = chunk["aux"]["ID"]
            if time.monotonic() > deadline:
                raise BuildError(
                    (watch.why_stopped() if watch is not None else None)
                    or f"the build took longer than {timeout} s and was stopped", log_tail=list(tail)
                )
        for line in lines_of.flush():
            if line.strip():
                log(line.rstrip())
    except APIError as exc:
        if engine_trouble(exc):
            raise BuildError(f"the Docker Engine failed during the build: {exc.explanation or exc}",
                             user_error=False, transient=True, log_tail=list(tail))
        # The engine refused the build itself (4xx): a Dockerfile it cannot read,
        # a context without the Dockerfile.
        raise BuildError(explain_failure(str(exc.explanation or exc), current_step, plan, memory_mb=memory_mb),
                         log_tail=list(tail))
    except DockerException as exc:
        raise BuildError(f"the Docker Engine failed during the build: {exc}", user_error=False, transient=True,
                         log_tail=list(tail))
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        if watch is not None and watch.reason:
            raise BuildError(watch.reason, log_tail=list(tail))
        raise BuildError(f"the build stopped: {exc}", user_error=False, transient=connection_lost(exc),
                         log_tail=list(tail))

    if image_id is None:
        image_id = client.images.get(tag).id
    return BuiltImage(ref=tag, id=image_id, reused=False)


def engine_trouble(exc: APIError) -> bool:
    """Whether the Docker Engine failed (5xx, 429) rather than refused what it
    was asked (4xx): trying again can help."""
    status = getattr(exc, "status_code", None)
    return status is None or status >= 500 or status == 429


def connection_lost(exc: BaseException) -> bool:
    """Whether talking to the engine failed on the way (refused, reset, broken):
    trying again can help. A read timeout is the build being silent for the
    whole build time, which it would be again."""
    if isinstance(exc, requests.Timeout) and not isinstance(exc, requests.ConnectTimeout):
        return False
    return isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, ConnectionError))


def _unreachable_source(tail, instruction: str, plan: BuildPlan | None,
                        configured: dict[str, str] | None) -> Unreachable | None:
    if failed_phase(instruction, plan) not in ("install", "build"):
        return None
    return unreachable(list(tail), configured)


def failed_phase(instruction: str, plan: BuildPlan | None) -> str:
    """Which step of the plan a Dockerfile instruction is: "install", "build",
    "dockerfile" (a step of the person's own Dockerfile), or "" (the platform's)."""
    if plan is None or not instruction:
        return ""
    if plan.uses_own_dockerfile:
        return "dockerfile"
    command = instruction[4:].strip() if instruction.upper().startswith("RUN ") else ""
    if command in plan.install_commands:
        return "install"
    if command in plan.build_commands:
        return "build"
    return ""


def out_of_memory(message: str, instruction: str, memory_mb: int) -> dict | None:
    """The parameters of the diagnosis build.out_of_memory when a build step
    was killed for memory (exit code 137 under the build's memory limit)."""
    code = re.search(r"returned a non-zero code: (\d+)", message)
    if not code or code.group(1) != "137" or not memory_mb:
        return None
    command = instruction[4:].strip() if instruction.upper().startswith("RUN ") else instruction
    # The size that would fit is the platform's to say (diagnoses.py): builds here have no sizes.
    return {"command": command[:300] or "a build step", "memory": memory_mb}


def explain_failure(message: str, instruction: str = "", plan: BuildPlan | None = None, *, memory_mb: int = 0) -> str:
    """The build's failure in words a beginner can act on: which step failed
    (installing the dependencies, or the app's build command) and what to look at."""
    message = message.strip()
    code = re.search(r"returned a non-zero code: (\d+)", message)
    phase = failed_phase(instruction, plan)
    out_of_memory = code is not None and code.group(1) == "137"
    memory_hint = (
        f" It was stopped with exit code 137, which usually means it ran out of memory (builds get {memory_mb} MiB)."
        if out_of_memory and memory_mb else ""
    )
    command = instruction[4:].strip() if instruction.upper().startswith("RUN ") else instruction
    if code and phase == "install":
        return (
            f"Installing your app's dependencies failed (the install step `{command}` exited with code "
            f"{code.group(1)}).{memory_hint} Look at the lines above in the log: usually a package name or version "
            "that does not exist, a lockfile that does not match its manifest, or a package that does not support "
            "this language version."
        )
    if code and phase == "build":
        return (
            f"Your app's build command failed (`{command}` exited with code {code.group(1)}).{memory_hint} "
            "The dependencies installed fine; the error is in the build itself (often a compile or type error in "
            "the code). Look at the lines above in the log."
        )
    if code and phase == "dockerfile":
        return (
            f"A step of your Dockerfile failed (`{instruction}` exited with code {code.group(1)}).{memory_hint} "
            "Look at the lines above in the log."
        )
    if plan is not None and plan.uses_own_dockerfile and re.search(
        r"pull access denied|manifest unknown|not found: manifest|No such image|failed to resolve|"
        r"repository does not exist|connection refused|dial tcp",
        message, re.IGNORECASE,
    ):
        return (
            f"Your Dockerfile starts FROM an image this host does not have and cannot download ({message}). "
            "Hakobune cannot reach image registries here: start FROM one of its stacks (for example "
            "hakobune/stack-python:bookworm, hakobune/stack-node:bookworm), or set it with a build argument in "
            "hakobune.toml."
        )
    if code:
        return _explain_failure(message)
    return message


def _explain_failure(message: str) -> str:
    if "returned a non-zero code" in message:
        return (
            "a build step failed: " + message.strip() + ". Look at the lines above it in the log: usually a "
            "dependency that does not exist or does not install on this Python version."
        )
    return message.strip()
