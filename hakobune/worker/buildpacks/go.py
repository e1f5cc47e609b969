"""Go apps: go.mod; or, from before modules, GOPATH mode: a `.godir` naming
the import path (Heroku's convention), Godeps/Godeps.json, vendor/, or a
GOPATH of its own (src/<import path>/). Compiled in a build stage on the Go
stack, run from the slim static stack (Debian with CA certificates, no
compiler)."""

from __future__ import annotations

import re
from pathlib import Path

from ._files import is_file, read_json, read_text, walk
from .plan import BuildPlan, Detection

NAME = "Go"
KEY = "go"
LOOKS_FOR = (
    "go.mod with a `package main` (at the top, or in cmd/<name>/); or, without modules, a `package main` at the "
    "top (its import path in .godir or Godeps/Godeps.json, dependencies in vendor/) or in a GOPATH's src/"
)
GO_DIRECTIVE = re.compile(r"^go\s+(\d+\.\d+(?:\.\d+)?)", re.MULTILINE)
MODULE = re.compile(r"^module\s+(\S+)", re.MULTILINE)
PACKAGE_MAIN = re.compile(r"^package\s+main\b", re.MULTILINE)
IMPORT_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]*(?:/[A-Za-z0-9._~-]+)*$")
BUILD_ENV = {"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}
# GOPATH mode: the app's GOPATH in the build stage, and the binaries' folder
# (on PATH at run time, so that a Procfile's `web: <name>` finds it).
GOPATH = "/tmp/gopath"
RUN_PATH = "/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def detect(src: Path, *, buildable: str = "") -> Detection | None:
    """With `buildable` (GOOGLE_BUILDABLE), that package is built."""
    buildable = _relative(buildable) if buildable else ""
    if is_file(src, "go.mod"):
        return _module(src, buildable)
    return _gopath(src, buildable)


def _relative(package: str) -> str:
    """cmd/web -> ./cmd/web (a path in the app, not a package of Go's own)."""
    first = package.split("/", 1)[0]
    return package if package.startswith("./") or package == "." or "." in first else f"./{package}"


def _module(src: Path, buildable: str = "") -> Detection | None:
    gomod = read_text(src, "go.mod")
    package = buildable or _main_package(src)
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
        build_env=dict(BUILD_ENV),
        language_version=version,
        sources={"language_version": "go.mod"} if version else {},
    )
    module = MODULE.search(gomod)
    where = "at the top" if package == "." else f"in {package.removeprefix('./')}"
    if buildable:
        where = f"in {buildable} (GOOGLE_BUILDABLE)"
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


def _gopath(src: Path, buildable: str = "") -> Detection | None:
    """An app from before modules, built in GOPATH mode (GO111MODULE=off), with
    its vendor/ folder. The binary is named after the import path's last part
    and put in /app/bin, which is on PATH."""
    if _has_main(src, ".") or (buildable and not (src / "src").is_dir() and walk(src, "*.go", max_depth=3)):
        import_path, where = _import_path(src)
        name = import_path.rsplit("/", 1)[-1]
        parent = import_path.rsplit("/", 1)[0] if "/" in import_path else ""
        build = (
            f"mkdir -p {GOPATH}/src/{parent} && ln -s /app {GOPATH}/src/{import_path} "
            f"&& cd {GOPATH}/src/{import_path} && GOPATH={GOPATH} go build -trimpath -ldflags=\"-s -w\" "
            f"-o /app/bin/{name} {buildable or '.'}"
        )
        words = f"a `package main` at the top, import path {import_path} ({where})"
        if buildable:
            words = f"{buildable} (GOOGLE_BUILDABLE), import path {import_path} ({where})"
        if (src / "vendor").is_dir() and not (src / "vendor").is_symlink():
            words += ", dependencies in vendor/"
    else:
        found = _gopath_main(src)
        if found is None:
            return None
        import_path = buildable.removeprefix("./").rstrip("/") if buildable else found
        name = import_path.rsplit("/", 1)[-1]
        build = f'GOPATH=/app go build -trimpath -ldflags="-s -w" -o /app/bin/{name} {import_path}'
        words = f"a GOPATH (src/) with `package main` in src/{import_path}"
    plan = BuildPlan(
        stack="static",
        build_stack="go",
        build_commands=(build,),
        artifacts=("bin",),
        start_command=f"/app/bin/{name}",
        env={"PATH": RUN_PATH},
        build_env={**BUILD_ENV, "GO111MODULE": "off"},
    )
    reason = (f"found Go without go.mod: {words}; compiled in GOPATH mode to bin/{name} in a build stage and "
              "run from a slim image")
    return Detection(stack="go", reason=reason, plan=plan)


def _has_main(src: Path, folder: str) -> bool:
    base = src if folder == "." else src / folder
    return any(
        PACKAGE_MAIN.search(read_text(src, p.relative_to(src).as_posix()))
        for p in sorted(base.glob("*.go")) if not p.name.endswith("_test.go") and not p.is_symlink()
    )


def _import_path(src: Path) -> tuple[str, str]:
    """The app's import path and where it was found: .godir, Godeps.json, or
    none (then `app`)."""
    godir = read_text(src, ".godir").strip().splitlines()
    if godir and IMPORT_PATH.match(godir[0].strip()) and ".." not in godir[0]:
        return godir[0].strip(), "from .godir"
    godeps = read_json(src, "Godeps/Godeps.json") or {}
    path = godeps.get("ImportPath")
    if isinstance(path, str) and IMPORT_PATH.match(path) and ".." not in path:
        return path, "from Godeps/Godeps.json"
    return "app", "none given, so `app`"


def _gopath_main(src: Path) -> str | None:
    """The import path of the first `package main` below src/ (a GOPATH)."""
    if not (src / "src").is_dir() or (src / "src").is_symlink():
        return None
    for path in walk(src / "src", "*.go", max_depth=5, skip=("vendor", ".git", "testdata")):
        if path.name.endswith("_test.go"):
            continue
        if PACKAGE_MAIN.search(read_text(src, path.relative_to(src).as_posix())):
            import_path = path.parent.relative_to(src / "src").as_posix()
            if import_path != "." and IMPORT_PATH.match(import_path):
                return import_path
    return None
