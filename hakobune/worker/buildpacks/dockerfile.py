"""Apps that bring their own Dockerfile: it is used as it is (build arguments
from hakobune.toml, multi-stage builds), within the build's limits."""

from __future__ import annotations

import re
from pathlib import Path

from ._files import first_file, is_file, read_text
from .plan import DOCKERFILE_STACK, BuildPlan, Detection

NAME = "Dockerfile"
KEY = DOCKERFILE_STACK
LOOKS_FOR = "a Dockerfile (or Containerfile) at the top of the app's folder"
NAMES = ("Dockerfile", "Containerfile", "dockerfile")
EXPOSE = re.compile(r"^\s*EXPOSE\s+(\d+)", re.MULTILINE | re.IGNORECASE)


def detect(src: Path, path: str | None = None) -> Detection | None:
    name = path or first_file(src, NAMES)
    if name is None or not is_file(src, name):
        return None
    text = read_text(src, name)
    plan = BuildPlan(stack=DOCKERFILE_STACK, start_command="", dockerfile_path=name)
    reason = f"found {name}; it is built as it is"
    exposed = EXPOSE.findall(text)
    if exposed:
        plan = plan.with_changes(port=int(exposed[-1]), sources={"port": f"{name} EXPOSE"})
        reason += f" and its app listens on port {exposed[-1]} (EXPOSE)"
    return Detection(stack=DOCKERFILE_STACK, reason=reason, plan=plan)
