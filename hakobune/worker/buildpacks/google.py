"""Google Cloud's buildpack settings, read the way Google's buildpacks read
them, so that a service moved between this host and Cloud Run builds the
same way:

    GOOGLE_ENTRYPOINT       the command that starts the app (over a Procfile's `web:`)
    GOOGLE_RUNTIME_VERSION  the language version (over .python-version, engines.node, go.mod)
    GOOGLE_BUILDABLE        the Go package to build ("./cmd/web"), or the module of a
                            Maven project of several ("web")

They are build environment variables: from project.toml's [[build.env]]
(the buildpacks' project descriptor), hakobune.toml's [build_env], and the
service's own variables of those names, each over the one before."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ._files import is_file, read_toml
from .plan import DetectionError

ENTRYPOINT = "GOOGLE_ENTRYPOINT"
RUNTIME_VERSION = "GOOGLE_RUNTIME_VERSION"
BUILDABLE = "GOOGLE_BUILDABLE"
NAMES = (ENTRYPOINT, RUNTIME_VERSION, BUILDABLE)
PROJECT_TOML = "project.toml"
VERSION = re.compile(r"^[\w.*<>=!~^ ,|-]{1,64}$")
PACKAGE = re.compile(r"^(?:\./)?[\w.-]+(?:/[\w.-]+)*/?(?:\.\.\.)?$")


@dataclass(frozen=True)
class GoogleSettings:
    entrypoint: str = ""
    runtime_version: str = ""
    buildable: str = ""
    # name -> where it was set ("project.toml", "hakobune.toml", "the service's settings")
    said: dict[str, str] = field(default_factory=dict)


def read(src: Path, from_config: dict[str, str], from_service: dict[str, str] | None) -> GoogleSettings:
    """The settings from project.toml, hakobune.toml's [build_env]
    (`from_config`) and the service's variables (`from_service`), in that
    order of weight. Raises DetectionError for a value Hakobune cannot use."""
    found: dict[str, str] = {}
    said: dict[str, str] = {}
    layers = [(_project_toml(src), PROJECT_TOML), (from_config, "hakobune.toml"),
              ({k: v for k, v in (from_service or {}).items() if k in NAMES}, "the service's settings")]
    for values, where in layers:
        for name, value in values.items():
            if name in NAMES and str(value).strip():
                found[name], said[name] = str(value).strip(), where
    version = found.get(RUNTIME_VERSION, "")
    if version and not VERSION.match(version):
        raise DetectionError(f"{RUNTIME_VERSION} ({said[RUNTIME_VERSION]}) must be a version like 3.12 or 20, "
                             f"not {version[:80]!r}.")
    buildable = found.get(BUILDABLE, "")
    if buildable and (not PACKAGE.match(buildable) or ".." in buildable.replace("...", "")):
        raise DetectionError(f"{BUILDABLE} ({said[BUILDABLE]}) must be a Go package or a Maven module inside the "
                             f"app's folder, like ./cmd/web or web, not {buildable[:80]!r}.")
    if "\n" in found.get(ENTRYPOINT, ""):
        raise DetectionError(f"{ENTRYPOINT} ({said[ENTRYPOINT]}) must be one command on one line.")
    return GoogleSettings(entrypoint=found.get(ENTRYPOINT, ""), runtime_version=version, buildable=buildable,
                          said=said)


def _project_toml(src: Path) -> dict[str, str]:
    """project.toml's [[build.env]] entries: {name: value}."""
    if not is_file(src, PROJECT_TOML):
        return {}
    data = read_toml(src, PROJECT_TOML) or {}
    entries = (data.get("build") or {}).get("env") if isinstance(data.get("build"), dict) else None
    found = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("value"), str):
            found[entry["name"]] = entry["value"]
    return found
