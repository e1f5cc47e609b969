"""Static sites: index.html at the top or in a build output folder (dist,
build, public, site, _site, out), served by lighttpd from the static stack."""

from __future__ import annotations

from pathlib import Path

from ._files import is_file, read_json
from .plan import BuildPlan, Detection

NAME = "Static site"
KEY = "static"
LOOKS_FOR = "index.html at the top, or in dist/, build/, public/, site/, _site/ or out/"
FOLDERS = ("", "dist", "build", "public", "site", "_site", "out")
SERVER = "lighttpd -D -f /etc/lighttpd/hakobune.conf"


def serve_plan(site_root: str, **changes) -> BuildPlan:
    """A plan that serves /app/<site_root> with the static stack's server."""
    root = "/app" + (f"/{site_root.strip('/')}" if site_root.strip("/") else "")
    return BuildPlan(stack="static", start_command=SERVER, env={"SITE_ROOT": root}, **changes)


def detect(src: Path) -> Detection | None:
    package = read_json(src, "package.json") if is_file(src, "package.json") else None
    if package is not None:
        scripts = package.get("scripts") or {}
        if isinstance(scripts, dict) and ({"build", "start"} & set(scripts)):
            return None  # built or served by Node: the Node detector decides
    for folder in FOLDERS:
        name = f"{folder}/index.html" if folder else "index.html"
        if is_file(src, name):
            where = f"{folder}/" if folder else "the top of the folder"
            reason = f"found index.html in {where}; served as a static site by lighttpd"
            return Detection(stack="static", reason=reason, plan=serve_plan(folder))
    return None
