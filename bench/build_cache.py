"""How fast do app images rebuild? For flask-hello, node-express,
python-npm-assets (Python with its stylesheet built by npm), java-maven
(Maven, from the plugins Debian packages), ruby-rack (a config.ru on the Ruby
stack) and php-hello (PHP-FPM behind lighttpd, its autoloader made after the
code), straight against the Docker Engine with hakobune.worker.builder (no
portal, no worker):

  cold          every layer built (nocache): dependencies downloaded and installed
  no change     the same source again: the content tag exists, the image is reused
  no change, through docker build
                the same source under a new tag: every layer from the cache
  code change   one line of code changed: the dependency layer is reused, only
                the code layer (and what follows it) is rebuilt

Each is run --runs times (cold: --cold-runs); the median and the range are
reported. Needs the stacks on this host (python manage.py stack ensure
python|node|python-node|java|ruby|php|go|static). ruby-sinatra and ruby-rails
take their gems from the Ruby stack (Debian's packages); go-http and
static-site cover the Go and static stacks. The rebuilds of Java, Rails (its
assets are precompiled again after a code change) and Go (compiled again) have
no target of their own: they are recorded as measured.

    .venv/bin/python bench/build_cache.py [--runs 7] [--cold-runs 3] [--apps ...] [--record [TITLE]]

--record appends (or replaces) the "## Build cache" section of bench/RESULTS.md,
leaving every other section alone; --record TITLE writes the section
"## Build cache: TITLE" instead (a run of some apps, beside the full one)."""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from hakobune.worker import builder, source, stacks  # noqa: E402
from hakobune.worker.buildpacks import detect  # noqa: E402

APPS = {
    # app: (file changed by the "code change" runs, the line appended to it)
    "flask-hello": ("app.py", "# change {n}\n"),
    "node-express": ("server.js", "// change {n}\n"),
    # Two languages: a code change also runs the npm build again (it follows the code).
    "python-npm-assets": ("app.py", "# change {n}\n"),
    # A code change runs `mvn package` again (the dependencies and plugins are the layer before).
    "java-maven": ("src/main/java/hello/Main.java", "// change {n}\n"),
    # No Gemfile: nothing to install (rubygems.org is not reachable here).
    "ruby-rack": ("config.ru", "# change {n}\n"),
    # composer.json of PHP and extensions only; a code change runs the autoloader's step again.
    "php-hello": ("public/index.php", "// change {n}\n"),
    # A Gemfile of no gem source: Sinatra and Puma from the stack (`bundle install --local`).
    "ruby-sinatra": ("app.rb", "# change {n}\n"),
    # Rails from the stack; a code change precompiles the assets again (it follows the code).
    "ruby-rails": ("app/controllers/greetings_controller.rb", "# change {n}\n"),
    # Compiled on the Go stack, run on the static stack's slim image.
    "go-http": ("main.go", "// change {n}\n"),
    "static-site": ("index.html", "<!-- change {n} -->\n"),
}
# Apps whose rebuilds are recorded as measured, without the 1 s target: Java's
# (`mvn package` runs on a code change), Rails' (`rails assets:precompile` does)
# and Go's (`go build` does).
MEASURED_ONLY = {"java-maven", "ruby-rails", "go-http"}
CA_BUNDLE = os.environ.get("BUILD_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
IMAGES = {
    "python": os.environ.get("STACK_PYTHON_IMAGE", "python:3.12-slim"),
    "node": os.environ.get("STACK_NODE_IMAGE", "node:22-slim"),
    "go": os.environ.get("STACK_GO_IMAGE", "golang:1.23"),
    "static": os.environ.get("STACK_STATIC_IMAGE", ""),
    "python-node": "",
    "java": os.environ.get("STACK_JAVA_IMAGE", ""),
    "ruby": os.environ.get("STACK_RUBY_IMAGE", ""),
    "php": os.environ.get("STACK_PHP_IMAGE", ""),
}
SECTION = "## Build cache"


class Bench:
    def __init__(self, client, app: str, workdir: Path):
        self.client = client
        self.app = app
        self.src = workdir / app
        shutil.copytree(ROOT / "tests" / "fixtures" / "apps" / app, self.src)
        self.tags: list[str] = []
        plan = detect(self.src).plan
        self.images = {
            name: stacks.resolve_stack(
                client, name, IMAGES.get(name, ""), cache_dir=Path(os.environ.get("HAKOBUNE_STACK_CACHE", ROOT / "var" / "stacks")),
                ca_bundle=CA_BUNDLE if Path(CA_BUNDLE).is_file() else None, allow_pull=False, log=lambda line: None,
            )
            for name in plan.stacks
        }
        self.stack = self.images[plan.stack]

    def build(self, *, nocache=False, salt="") -> tuple[float, builder.BuiltImage, list[str]]:
        """One build as the pipeline does it: detect, digest, context, tag, build."""
        lines: list[str] = []
        started = time.perf_counter()
        plan = detect(self.src).plan
        digest = source.tree_digest(self.src) + salt
        run = self.images[plan.stack].ref
        build_ref = self.images[plan.build_stack].ref if plan.build_stack else None
        dockerfile = builder.prepare_context(self.src, plan, run, CA_BUNDLE if Path(CA_BUNDLE).is_file() else None,
                                             build_image=build_ref)
        ids = tuple(self.client.images.get(image.ref).id for image in self.images.values())
        tag = builder.image_tag("bench", self.app, digest, plan, run, base_image_ids=ids)
        built = builder.build_image(self.client, self.src, dockerfile, tag, log=lines.append, plan=plan,
                                    nocache=nocache, memory_mb=2048, cpu_shares=512)
        elapsed = time.perf_counter() - started
        self.tags.append(tag)
        return elapsed, built, lines

    def change_code(self, n: int) -> None:
        name, line = APPS[self.app]
        with open(self.src / name, "a") as handle:
            handle.write(line.format(n=n))

    def cleanup(self) -> None:
        for tag in dict.fromkeys(self.tags):
            try:
                self.client.images.remove(tag, noprune=False)
            except docker.errors.APIError:
                pass


def run_app(client, app: str, runs: int, cold_runs: int, workdir: Path) -> dict:
    bench = Bench(client, app, workdir)
    results = {"cold": [], "no change": [], "no change, through docker build": [], "code change": []}
    checks = {}
    try:
        for i in range(cold_runs):
            seconds, built, _ = bench.build(nocache=True, salt=f"cold{i}-{time.time_ns()}")
            results["cold"].append(seconds)
        bench.build()  # the first deploy of this source: not measured
        for i in range(runs):
            seconds, built, _ = bench.build()
            assert built.reused, "the same source must reuse its image"
            results["no change"].append(seconds)
        for i in range(runs):
            seconds, built, lines = bench.build(salt=f"retag{i}-{time.time_ns()}")
            results["no change, through docker build"].append(seconds)
        for i in range(runs):
            bench.change_code(i)
            seconds, built, lines = bench.build()
            assert not built.reused
            install_cached = _install_step_cached(lines) if detect(bench.src).plan.install_commands else None
            checks.setdefault("dependency layer reused on code change", []).append(install_cached)
            results["code change"].append(seconds)
    finally:
        bench.cleanup()
    return {"results": results, "checks": checks, "stack": f"{bench.stack.ref} ({bench.stack.version})"}


def _install_step_cached(lines: list[str]) -> bool:
    """True when the RUN of the install step was answered from the cache."""
    for index, line in enumerate(lines):
        if re.match(r"^Step \d+/\d+ : RUN ", line):
            following = lines[index + 1] if index + 1 < len(lines) else ""
            return "Using cache" in following
    return False


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f"{kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    client = docker.from_env()
    info = client.info()
    version = client.version().get("Version", "?")
    return (
        f"{cpu or platform.processor()}, {os.cpu_count()} CPUs, {memory}; {platform.system()} {platform.release()}; "
        f"Docker Engine {version} ({info.get('Driver')} storage, classic builder through the API)"
    )


def summarise(seconds: list[float]) -> str:
    if not seconds:
        return "–"
    median = statistics.median(seconds)
    return f"{_fmt(median)} (min {_fmt(min(seconds))}, max {_fmt(max(seconds))}, n={len(seconds)})"


def _fmt(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def markdown(report: dict, runs: int, cold_runs: int, section: str = SECTION, apps_arg: str = "") -> str:
    lines = [
        section,
        "",
        f"Recorded {report['when']} by `bench/build_cache.py --runs {runs} --cold-runs {cold_runs}{apps_arg}` "
        "(hakobune.worker.builder straight against the Docker Engine; no portal, no worker).",
        "",
        f"Machine: {report['machine']}. Load average (1 min) {report['load'][0]:.1f} at the start and "
        f"{report['load'][1]:.1f} at the end: other work on the host shows in the spread.",
        "",
        "Each build is what the pipeline's build step does: detect, digest the source, write the context, "
        "tag by content, build. *cold* builds every layer (`nocache`), so dependencies are downloaded from "
        "PyPI / the npm registry (through this host's proxy; the Ruby, PHP, Go and static apps download nothing); *no change* is the same source deployed again "
        "(its content tag exists: the image is reused); *no change, through docker build* is the same source "
        "under a new tag, every layer from the cache; *code change* appends one line to the app's code.",
        "",
        "| app | stack | cold | no change | no change, through docker build | code change (one line) |",
        "|---|---|---|---|---|---|",
    ]
    for app, data in report["apps"].items():
        r = data["results"]
        lines.append(
            f"| {app} | {data['stack']} | {summarise(r['cold'])} | {summarise(r['no change'])} | "
            f"{summarise(r['no change, through docker build'])} | {summarise(r['code change'])} |"
        )
    lines.append("")
    verdicts = []
    for app, data in report["apps"].items():
        r = data["results"]
        worst = max(statistics.median(r["no change"]), statistics.median(r["code change"]))
        reused = data["checks"].get("dependency layer reused on code change", [False])
        layer = ("no dependency layer (nothing to install)" if all(r is None for r in reused)
                 else f"dependency layer {'reused' if all(reused) else 'NOT reused'} on every code change")
        speed = ("recorded as measured (no target)" if app in MEASURED_ONLY
                 else f"{'under' if worst < 1 else 'NOT under'} 1 s (medians)")
        verdicts.append(
            f"- {app}: no-change and code-only rebuilds {speed}; {layer}."
        )
    lines += ["Target: no-change and code-only rebuilds under 1 s (Java's, Rails' and Go's recorded as measured).", "",
              *verdicts, ""]
    return "\n".join(lines)


def record(text: str, path: Path, section: str = SECTION) -> None:
    """Replace our section of RESULTS.md (up to the next "## ") or append it."""
    existing = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(existing):
        updated = pattern.sub(lambda _: text.rstrip("\n") + "\n\n", existing, count=1)
    else:
        updated = existing.rstrip("\n") + "\n\n" + text
    path.write_text(updated.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--apps", nargs="*", default=list(APPS))
    parser.add_argument("--record", nargs="?", const="", default=None, metavar="TITLE",
                        help="write the section into bench/RESULTS.md (with TITLE: \"## Build cache: TITLE\")")
    args = parser.parse_args()
    client = docker.from_env(timeout=900)
    load_before = os.getloadavg()[0]
    report = {"machine": machine(), "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "apps": {}}
    with tempfile.TemporaryDirectory(prefix="hakobune-bench-") as workdir:
        for app in args.apps:
            print(f"{app}: building…", flush=True)
            report["apps"][app] = run_app(client, app, args.runs, args.cold_runs, Path(workdir))
            for name, seconds in report["apps"][app]["results"].items():
                print(f"  {name:32s} {summarise(seconds)}", flush=True)
    report["load"] = (load_before, os.getloadavg()[0])
    section = f"{SECTION}: {args.record}" if args.record else SECTION
    apps_arg = "" if args.apps == list(APPS) else " --apps " + " ".join(args.apps)
    text = markdown(report, args.runs, args.cold_runs, section, apps_arg)
    print()
    print(text)
    if args.record is not None:
        record(text, ROOT / "bench" / "RESULTS.md", section)
        print("recorded in bench/RESULTS.md")


if __name__ == "__main__":
    main()
