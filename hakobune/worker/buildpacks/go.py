"""Go apps: go.mod. Compiled in a build stage on the Go stack, run from the
slim static stack (Debian with CA certificates, no compiler)."""

from __future__ import annotations

import re
from pathlib import Path

from ._files import is_file, read_text, walk
from .plan import BuildPlan, Detection

NAME = "Go"
KEY = "go"
LOOKS_FOR = "go.mod with a `package main` (at the top, or in cmd/<name>/)"
GO_DIRECTIVE = re.compile(r"^go\s+(\d+\.\d+(?:\.\d+)?)", re.MULTILINE)
MODULE = re.compile(r"^module\s+(\S+)", re.MULTILINE)
PACKAGE_MAIN = re.compile(r"^package\s+main\b", re.MULTILINE)


def detect(src: Path) -> Detection | None:
    if not is_file(src, "go.mod"):
        return None
    gomod = read_text(src, "go.mod")
    package = _main_package(src)
    if package is None:
        return None
    binary = "server.bin" if (src / "server").exists() else "server"
    version_match = GO_DIRECTIVE.search(gomod)
    version = version_match.group(1) if version_match else ""
    dependency_files = ("go.mod", "go.sum") if is_file(src, "go.sum") else ("go.mod",)
    plan = BuildPlan(
        stack="static",
        build_stack="go",
        dependency_files=dependency_files,
        install_commands=("go mod download",),
        build_commands=(f'go build -trimpath -ldflags="-s -w" -o /app/{binary} {package}',),
        artifacts=(binary,),
        start_command=f"/app/{binary}",
        build_env={"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"},
        language_version=version,
    )
    module = MODULE.search(gomod)
    where = "at the top" if package == "." else f"in {package.removeprefix('./')}"
    reason = (
        f"found go.mod ({module.group(1) if module else 'a Go module'}) with package main {where}; "
        "compiled in a build stage and run from a slim image"
    )
    if version:
        reason += f"; it asks for Go {version}"
    return Detection(stack="go", reason=reason, plan=plan)


def _main_package(src: Path) -> str | None:
    if any(PACKAGE_MAIN.search(read_text(src, p.name)) for p in sorted(src.glob("*.go")) if not p.name.endswith("_test.go")):
        return "."
    folders = []
    for path in walk(src, "*.go", max_depth=3):
        if not path.name.endswith("_test.go") and PACKAGE_MAIN.search(read_text(src, path.relative_to(src).as_posix())):
            folder = path.parent.relative_to(src).as_posix()
            if folder not in folders:
                folders.append(folder)
    if not folders:
        return None
    preferred = [f for f in folders if f.startswith("cmd/")] or folders
    return "./" + preferred[0]
