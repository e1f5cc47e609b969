"""Builds an app's image on the local Docker Engine from its plan, streaming the
build's output line by line. Images are tagged by content, so building the
same source with the same plan again is a no-op."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound

from .buildpacks.plan import GENERATED_DIR, BuildPlan

TAIL_LINES = 30


class BuildError(Exception):
    """The image could not be built. `user_error` tells a failure in the app's
    own install or build steps from a failure of the platform."""

    def __init__(self, message: str, *, log_tail: list[str] | None = None, user_error: bool = True):
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail or []
        self.user_error = user_error


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    id: str
    reused: bool


def image_tag(team: str, service: str, source_digest: str, plan: BuildPlan, base_image: str) -> str:
    """hakobune/<team>/<service>:<digest of source, plan and base image>."""
    content = hashlib.sha256()
    content.update(source_digest.encode())
    content.update(repr(sorted(plan.to_dict().items())).encode())
    content.update(base_image.encode())
    return f"hakobune/{team}/{service}:{content.hexdigest()[:16]}"


def prepare_context(src: Path, plan: BuildPlan, base_image: str, ca_bundle: str | None) -> str:
    """Writes the generated Dockerfile (and the CA bundle, when configured) into
    the build context; returns the Dockerfile's path relative to it."""
    generated = src / GENERATED_DIR
    generated.mkdir(exist_ok=True)
    with_ca = bool(ca_bundle) and Path(ca_bundle).is_file()
    if with_ca:
        shutil.copyfile(ca_bundle, generated / "ca-certificates.crt")
    (generated / "Dockerfile").write_text(plan.dockerfile(base_image, with_ca_bundle=with_ca))
    return f"{GENERATED_DIR}/Dockerfile"


def build_image(
    client: docker.DockerClient,
    context: Path,
    dockerfile: str,
    tag: str,
    *,
    log: Callable[[str], None],
    timeout: int = 900,
    memory_mb: int = 2048,
) -> BuiltImage:
    try:
        image = client.images.get(tag)
        log(f"An image of this exact source and plan exists already ({tag}); reusing it.")
        return BuiltImage(ref=tag, id=image.id, reused=True)
    except ImageNotFound:
        pass
    except DockerException as exc:
        raise BuildError(f"the Docker Engine does not answer: {exc}", user_error=False)

    tail: deque[str] = deque(maxlen=TAIL_LINES)
    image_id = None
    deadline = time.monotonic() + timeout
    memory = memory_mb * 1024 * 1024
    try:
        stream = client.api.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            timeout=timeout,
            container_limits={"memory": memory, "memswap": memory},
            labels={"org.hakobune.managed": "true"},
        )
        pending = ""
        for chunk in stream:
            if "error" in chunk:
                message = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                for line in message.splitlines():
                    tail.append(line)
                raise BuildError(_explain_failure(message), log_tail=list(tail))
            if "stream" in chunk:
                pending += chunk["stream"]
                *lines, pending = pending.split("\n")
                for line in lines:
                    line = line.rstrip("\r")
                    if line.strip():
                        tail.append(line)
                        log(line)
            if chunk.get("aux", {}).get("ID"):
                image_id = chunk["aux"]["ID"]
            if time.monotonic() > deadline:
                raise BuildError(
                    f"the build took longer than {timeout} s and was stopped", log_tail=list(tail)
                )
        if pending.strip():
            log(pending.rstrip())
    except APIError as exc:
        raise BuildError(f"the Docker Engine refused the build: {exc.explanation or exc}", log_tail=list(tail))
    except DockerException as exc:
        raise BuildError(f"the Docker Engine failed during the build: {exc}", user_error=False, log_tail=list(tail))
    except (requests.RequestException, OSError) as exc:
        raise BuildError(f"the build stopped: {exc}", user_error=False, log_tail=list(tail))

    if image_id is None:
        image_id = client.images.get(tag).id
    return BuiltImage(ref=tag, id=image_id, reused=False)


def _explain_failure(message: str) -> str:
    if "returned a non-zero code" in message:
        return (
            "a build step failed: " + message.strip() + ". Look at the lines above it in the log: usually a "
            "dependency that does not exist or does not install on this Python version."
        )
    return message.strip()
