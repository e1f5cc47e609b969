"""What the local-runtime benchmarks share: a built flask-hello image, a Caddy
of the benchmark's own (never the platform's on 2019/8080), the local backend
pointed at it, the machine's description, and appending to RESULTS.md."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import docker
import requests

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_DIR / "bench" / "RESULTS.md"
HELLO_IMAGE = "hakobune/bench-local/flask-hello:bench"


# A wrk script that sends each request to the next of `hosts` (Host header), in turn.
SPREAD_LUA = """
local hosts = {%s}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/", {["Host"] = hosts[(counter %% #hosts) + 1]})
end
"""

def hello_image(client: docker.DockerClient, given: str | None = None) -> str:
    """A flask-hello image built by the platform (tests/fixtures/apps/flask-hello),
    tagged for the benchmark so that no clean-up elsewhere removes it meanwhile.
    Builds nothing: deploy flask-hello once (or run the integration tests) first."""
    if given:
        client.images.get(given)
        return given
    try:
        client.images.get(HELLO_IMAGE)
        return HELLO_IMAGE
    except docker.errors.ImageNotFound:
        pass
    for image in client.images.list():
        if any(tag.split(":")[0].endswith("/flask-hello") for tag in image.tags):
            repository, tag = HELLO_IMAGE.rsplit(":", 1)
            image.tag(repository, tag)
            return HELLO_IMAGE
    raise SystemExit("no flask-hello image on this host: deploy tests/fixtures/apps/flask-hello once, or pass --image")


@contextmanager
def own_caddy(admin_port: int, listen_port: int):
    """A Caddy of the benchmark's own; yields (admin URL, access log path)."""
    folder = Path(tempfile.mkdtemp(prefix="hakobune-bench-caddy."))
    (folder / "boot.json").write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{admin_port}"}}))
    env = {**os.environ, "HOME": str(folder), "XDG_DATA_HOME": str(folder), "XDG_CONFIG_HOME": str(folder)}
    # Its output to a log file, as scripts/start.sh starts the platform's.
    output = open(folder / "caddy.log", "ab")
    process = subprocess.Popen(
        ["caddy", "run", "--config", str(folder / "boot.json")], stdout=output, stderr=output, env=env,
    )
    admin = f"http://127.0.0.1:{admin_port}"
    session = requests.Session()
    session.trust_env = False
    deadline = time.monotonic() + 15
    while True:
        try:
            if session.get(f"{admin}/config/", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit(f"caddy did not start on admin port {admin_port}")
        time.sleep(0.1)
    try:
        yield admin, str(folder / "access.log")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        output.close()
        shutil.rmtree(folder, ignore_errors=True)


def backend(admin_url: str, listen_port: int, access_log: str | None):
    from hakobune.runtime.docker_local import DockerLocalBackend

    return DockerLocalBackend(
        "bench", router_admin_url=admin_url, router_port=listen_port, access_log=access_log, boot_timeout=120
    )


def remove_team(client: docker.DockerClient, team: str) -> None:
    """Every container and the network of the benchmark's team, and its rules."""
    from hakobune.runtime.docker_local import LABEL_TEAM, team_network_name
    from hakobune.runtime.firewall import Firewall, FirewallError, bridge_of

    for container in client.containers.list(all=True, filters={"label": f"{LABEL_TEAM}={team}"}):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    for network in client.networks.list(names=[team_network_name(team)]):
        bridge = bridge_of(network)
        network.remove()
        try:
            Firewall().remove(bridge)
        except FirewallError:
            pass


def machine() -> str:
    def first(path, prefix):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
        return "?"

    try:
        docker_version = docker.from_env().version()["Version"]
    except Exception:  # noqa: BLE001
        docker_version = "?"
    caddy = subprocess.run(["caddy", "version"], capture_output=True, text=True).stdout.split()[:1]
    return (
        f"{os.cpu_count()} CPUs ({first('/proc/cpuinfo', 'model name')}), "
        f"{int(first('/proc/meminfo', 'MemTotal').split()[0]) / 1024 / 1024:.1f} GiB RAM, "
        f"Linux {platform.release()}, Docker Engine {docker_version}, Caddy {caddy[0] if caddy else '?'}"
    )


def commit() -> str:
    """The commit measured (with "+changes" when the tree differs from it)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                              text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                  ":!bench/RESULTS.md"], cwd=PROJECT_DIR, capture_output=True, text=True,
                                 check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if changed else head


def append_results(title: str, body: str) -> None:
    """Appends a section to bench/RESULTS.md (other benchmarks append theirs)."""
    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    section = f"\n## {title} ({stamp})\n\nMachine: {machine()}\n\n{body.rstrip()}\n"
    with RESULTS.open("a") as handle:
        handle.write(section)
