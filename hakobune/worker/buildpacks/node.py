"""Node.js apps: package.json with the npm, yarn or pnpm lockfile; engines.node;
the `build` script when present; the `start` script (or main/server.js) to run.
A package that builds but does not start (a Vite, React or Astro site) is
built on the Node stack and served as static files.

Without package.json, a server.js or index.js (or app.js, main.js) that
serves HTTP is an app of Node's own modules: nothing to install, started
with `node <file>`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ._files import is_file, read_json, read_text
from .plan import BuildPlan, Detection
from .static import serve_plan

NAME = "Node.js"
KEY = "node"
LOOKS_FOR = (
    "package.json with a `start` script, a main file (server.js, index.js, app.js), or a `build` script; "
    "or, without package.json, a server.js or index.js that serves HTTP"
)

# Used when package.json does not name a version in "packageManager".
PNPM = "pnpm@9.15.9"
YARN = "yarn@1.22.22"
PACKAGE_MANAGER = re.compile(r"^(?P<name>npm|pnpm|yarn)@(?P<version>[0-9][\w.+-]*)")
SIMPLE_NODE = re.compile(r"^node\s+[\w./@-]+(\s+[\w./=@-]+)*$")
MAIN_FILES = ("server.js", "index.js", "app.js", "main.js", "server.mjs", "index.mjs")
# What a front-end build writes, by the tool in the build script.
BUILD_OUTPUT = (("vite", "dist"), ("react-scripts", "build"), ("astro", "dist"), ("parcel", "dist"),
                ("webpack", "dist"), ("ng ", "dist"), ("eleventy", "_site"), ("next export", "out"))
# What a file of Node's own modules serves HTTP with.
SERVES_HTTP = re.compile(r"""(?:require\(\s*['"](?:node:)?https?['"]\s*\)|from\s+['"](?:node:)?https?['"])""")
RUN_ENV = {
    "NODE_ENV": "production",
    # The instance's root filesystem is read-only; npm writes its cache and logs here.
    "NPM_CONFIG_CACHE": "/tmp/.npm",
    "NPM_CONFIG_UPDATE_NOTIFIER": "false",
    "NPM_CONFIG_FUND": "false",
}


def detect(src: Path, *, start_command: str = "") -> Detection | None:
    """With `start_command` (a Procfile's web line), package.json alone is enough."""
    if not is_file(src, "package.json"):
        return _without_package_json(src, start_command)
    package = read_json(src, "package.json")
    if package is None:
        return None
    scripts = package.get("scripts") if isinstance(package.get("scripts"), dict) else {}
    manager, version, lockfile = _package_manager(src, package)
    build_script = scripts.get("build") if isinstance(scripts.get("build"), str) else None
    start_script = scripts.get("start") if isinstance(scripts.get("start"), str) else None
    main = package.get("main") if isinstance(package.get("main"), str) and is_file(src, package["main"]) else None
    main = main or next((name for name in MAIN_FILES if is_file(src, name)), None)

    install = _install_command(manager, version, lockfile, with_dev=bool(build_script))
    build = (f"{manager} run build",) if build_script else ()
    dependency_files = tuple(name for name in ("package.json", lockfile, ".npmrc") if name and is_file(src, name))
    node_version = _engines_node(package)
    tool = f"{manager} ({lockfile})" if lockfile else f"{manager} (no lockfile: versions are not pinned)"
    notes = () if lockfile else ("Commit your lockfile (package-lock.json, pnpm-lock.yaml or yarn.lock) so every "
                                 "build installs the same versions.",)

    if start_script or main or start_command:
        if start_command:
            start, how = start_command, "the app's own start command"
        elif start_script and SIMPLE_NODE.match(start_script.strip()):
            start, how = start_script.strip(), f"the start script `{start_script.strip()}`"
        elif start_script:
            start, how = f"{manager} start", f"the start script (`{start_script.strip()}`)"
        else:
            start, how = f"node {shlex.quote(main)}", f"{main}"
        plan = BuildPlan(
            stack="node",
            dependency_files=dependency_files,
            install_commands=(install,),
            build_commands=build,
            start_command=start,
            env=dict(RUN_ENV),
            language_version=node_version,
            sources={"language_version": "package.json engines.node"} if node_version else {},
            notes=notes,
        )
        reason = f"found package.json installed with {tool}"
        if build_script:
            reason += ", a build script"
        reason += f", started with {how}"
        if node_version:
            reason += f"; it asks for Node.js {node_version}"
        return Detection(stack="node", reason=reason, plan=plan)

    if build_script:
        output = next((folder for tool_name, folder in BUILD_OUTPUT if tool_name in build_script), "dist")
        plan = serve_plan(
            output,
            build_stack="node",
            dependency_files=dependency_files,
            install_commands=(install,),
            build_commands=build,
            artifacts=(output,),
            language_version=node_version,
            sources={"language_version": "package.json engines.node"} if node_version else {},
            notes=notes,
        )
        reason = (
            f"found package.json with a build script (`{build_script}`) and no start script: built with {tool} "
            f"on Node.js, then {output}/ is served as a static site by lighttpd"
        )
        return Detection(stack="static", reason=reason, plan=plan)
    return None


BUILD_LOOKS_FOR = "package.json (its dependencies installed, then its `build` script run, if it has one)"


def build_steps(src: Path) -> tuple[BuildPlan, str] | None:
    """Node's part of an app built with more than one language: install
    package.json's dependencies (its postinstall script runs then) and run its
    build script; the other language starts the app."""
    package = read_json(src, "package.json") if is_file(src, "package.json") else None
    if package is None:
        return None
    scripts = package.get("scripts") if isinstance(package.get("scripts"), dict) else {}
    build_script = scripts.get("build") if isinstance(scripts.get("build"), str) else None
    manager, version, lockfile = _package_manager(src, package)
    tool = f"{manager} ({lockfile})" if lockfile else f"{manager} (no lockfile: versions are not pinned)"
    node_version = _engines_node(package)
    plan = BuildPlan(
        stack="node",
        start_command="",
        language_version=node_version,
        sources={"language_version": "package.json engines.node"} if node_version else {},
        dependency_files=tuple(name for name in ("package.json", lockfile, ".npmrc") if name and is_file(src, name)),
        install_commands=(_install_command(manager, version, lockfile, with_dev=True),),
        build_commands=(f"{manager} run build",) if build_script else (),
        env={key: value for key, value in RUN_ENV.items() if key != "NODE_ENV"},
    )
    reason = f"found package.json installed with {tool}"
    if build_script:
        reason += f" and its build script (`{build_script}`)"
    if node_version:
        reason += f"; it asks for Node.js {node_version}"
    return plan, reason


def _engines_node(package: dict) -> str:
    engines = package.get("engines") if isinstance(package.get("engines"), dict) else {}
    return engines.get("node") if isinstance(engines.get("node"), str) else ""


def _without_package_json(src: Path, start_command: str) -> Detection | None:
    """A server.js/index.js of Node's own modules (no dependencies): started
    with node, or with the Procfile's command when it runs node."""
    if start_command:
        words = start_command.split()
        if not words or words[0] != "node":
            return None
        main = next((w for w in words[1:] if w.endswith((".js", ".mjs", ".cjs")) and is_file(src, w)), None)
        if main is None:
            return None
        start, how = start_command, f"the app's own start command (`{start_command}`)"
    else:
        main = next((name for name in MAIN_FILES if SERVES_HTTP.search(read_text(src, name))), None)
        if main is None:
            return None
        start, how = f"node {shlex.quote(main)}", f"`node {main}`"
    plan = BuildPlan(
        stack="node",
        start_command=start,
        env=dict(RUN_ENV),
        notes=("Hakobune found no package.json, so nothing is installed: add one (with a lockfile) when the app "
               "needs a package from npm.",),
    )
    reason = f"found {main} serving HTTP with Node's own modules and no package.json (nothing to install), started with {how}"
    return Detection(stack="node", reason=reason, plan=plan)


def _package_manager(src: Path, package: dict) -> tuple[str, str, str]:
    declared = PACKAGE_MANAGER.match(str(package.get("packageManager") or ""))
    if is_file(src, "pnpm-lock.yaml"):
        manager, lockfile = "pnpm", "pnpm-lock.yaml"
    elif is_file(src, "yarn.lock"):
        manager, lockfile = "yarn", "yarn.lock"
    elif is_file(src, "package-lock.json"):
        manager, lockfile = "npm", "package-lock.json"
    elif is_file(src, "npm-shrinkwrap.json"):
        manager, lockfile = "npm", "npm-shrinkwrap.json"
    else:
        manager, lockfile = (declared["name"] if declared else "npm"), ""
    version = declared["version"] if declared and declared["name"] == manager else ""
    return manager, version, lockfile


def _install_command(manager: str, version: str, lockfile: str, *, with_dev: bool) -> str:
    # The build needs devDependencies (vite, typescript); an app without a build
    # script installs production dependencies only.
    prefix = "NODE_ENV=development " if with_dev else "NODE_ENV=production "
    if manager == "pnpm":
        tool = f"pnpm@{version}" if version else PNPM
        frozen = " --frozen-lockfile" if lockfile else ""
        return f"npm install -g {tool} && {prefix}pnpm install{frozen}"
    if manager == "yarn":
        tool = f"yarn@{version}" if version and version.startswith("1.") else YARN
        frozen = " --frozen-lockfile" if lockfile else ""
        return f"npm install -g {tool} && {prefix}yarn install{frozen} --non-interactive"
    if lockfile:
        return f"{prefix}npm ci --no-audit --no-fund"
    return f"{prefix}npm install --no-audit --no-fund"
