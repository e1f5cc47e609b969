"""What a build can do on this host's Docker Engine, asked as a person would
ask it: a deploy whose Dockerfile tries to reach the host, and builds of the
local builder with small limits (a fork bomb, a step that fills the disk, one
that never ends). Builds are confined (docs/security.md, "Builds"): their
steps run on Hakobune's build network, isolated like a team network, in a
cgroup of their own with pids and memory limits, watched for time and disk;
a person's Dockerfile is checked before the engine sees it.

Traffic only ever goes to what the tests start on this host: a listener on
the host (reached through the build network's gateway, the host side of a
bridge Hakobune made) and one on 127.0.0.1. The metadata and private-range
blocks are read from iptables, never tried."""

import os
import secrets
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.runtime.firewall import (
    FORWARD_CHAIN,
    INPUT_CHAIN,
    PRIVATE_CHAIN,
    PRIVATE_RANGES,
    TEAM_IN_CHAIN,
    TEAM_OUT_CHAIN,
    bridge_of,
    host_resolvers,
)
from hakobune.worker.builders.base import BuildError, BuildRequest
from hakobune.worker.builders.local_docker import LocalDockerBuilder
from hakobune.worker.buildpacks import detect
from tests.conftest import archive_of

from tests.support.infrastructure import wait_for_build
from tests.support.listeners import host_listener as listening_on

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BUILD_NETWORK = "hakobune-builds"
STACK = "hakobune/stack-python:bookworm"

# Run inside a build step: connect to the step's default gateway (the host
# side of the network the step runs on) at the test's listener.
REACH_THE_HOST = """\
import socket, struct, sys
port = int(sys.argv[1])
for line in open("/proc/net/route").read().splitlines()[1:]:
    fields = line.split()
    if fields[1] == "00000000":
        gateway = socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
print("gateway", gateway, flush=True)
try:
    socket.create_connection((gateway, port), timeout=5).close()
except OSError as exc:
    print("could not reach the host:", exc, flush=True)
    sys.exit(3)
print("reached the host", flush=True)
"""

# A bounded fork bomb: up to 300 processes that sleep 15 s. Unconfined it
# ends by itself (300 sleeping processes harm nobody); confined it meets the
# build's pids limit.
FORK_BOMB = """\
import os
kids, refused = [], 0
for _ in range(300):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        os.execv("/bin/sleep", ["sleep", "15"])
    kids.append(pid)
print("started", len(kids), "refused", refused, flush=True)
for kid in kids:
    os.waitpid(kid, 0)
"""


def _stack_is_here(docker_client):
    try:
        docker_client.images.get(STACK)
    except Exception:  # noqa: BLE001 - not built on this host yet
        pytest.skip(f"{STACK} is not on this host (tests/integration/test_stacks.py builds it)")


# -- a deploy, through the portal's pipeline -------------------------------------------------


@pytest.fixture
def deployer(django_db_blocker, worker, router, docker_client):
    """Deploys an app made of the given files for a team of the test's own;
    returns the finished build."""
    _stack_is_here(docker_client)
    team_name = f"bc{secrets.token_hex(3)}"
    username = f"builder-{team_name}"
    with django_db_blocker.unblock():
        owner = get_user_model().objects.create_user(username=username, password="x")
        team = create_team(name=team_name, owner=owner)

    def deploy(name, files):
        data = archive_of("dockerfile", extra=files, folder=name)
        upload = SimpleUploadedFile(f"{name}.tar.gz", data, content_type="application/octet-stream")
        with django_db_blocker.unblock():
            service = create_service(team=team, name=name, created_by=owner)
            build = deploy_service(service=service, source_file=upload, created_by=owner)
            build = wait_for_build(build, timeout=300)
            build.full_log = "\n".join(build.log_lines.values_list("text", flat=True))
        return build

    yield deploy
    for image in docker_client.images.list(name=f"hakobune/{team_name}/*"):
        for tag in image.tags:
            docker_client.images.remove(tag, noprune=True)
    with django_db_blocker.unblock():
        get_user_model().objects.filter(username=username).delete()


@pytest.fixture
def host_listener():
    """A TCP listener of the test's own on every address of the host, so on
    the gateway of any Docker bridge too: what a host service listening on
    0.0.0.0 (Redis, PostgreSQL, the portal) looks like to a build step."""
    with listening_on("0.0.0.0") as (port, accepted):
        yield port, accepted


def test_a_run_step_cannot_reach_a_listener_on_the_host_through_the_build_networks_gateway(
        deployer, host_listener, docker_client):
    port, accepted = host_listener
    dockerfile = f"FROM {STACK}\nCOPY reach.py /reach.py\nRUN python3 /reach.py {port}\nCMD [\"python3\"]\n"

    build = deployer("reach", {"Dockerfile": dockerfile, "reach.py": REACH_THE_HOST})

    assert accepted == [], "a build step reached the host:\n" + build.full_log[-2000:]
    # The step ran on the build network, its connection was dropped (a timeout,
    # not a refusal), and the build failed in words.
    gateway = docker_client.networks.get(BUILD_NETWORK).attrs["IPAM"]["Config"][0]["Gateway"]
    assert f"gateway {gateway}" in build.full_log, build.full_log[-3000:]
    assert "could not reach the host: timed out" in build.full_log
    assert build.status == "failed"
    assert build.failure_reason.startswith(f"A step of your Dockerfile failed (`RUN python3 /reach.py {port}` exited "
                                           "with code 3).")
    # The host itself reaches its listener on that address: only the build was kept out.
    with socket.create_connection((gateway, port), timeout=2):
        pass
    deadline = time.monotonic() + 2
    while not accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert accepted, "the control connection from the host was not accepted"


@pytest.fixture
def loopback_http():
    """An HTTP server of the test's own on 127.0.0.1 (where Caddy's admin API
    and every published service listen); it records each request."""
    requests_seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            requests_seen.append(self.path)
            body = b'{"secret": "every route of the router"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], requests_seen
    server.shutdown()
    server.server_close()


def test_add_of_a_loopback_url_is_refused_before_the_build_and_the_listener_sees_nothing(deployer, loopback_http):
    port, requests_seen = loopback_http
    dockerfile = f"FROM {STACK}\nADD http://127.0.0.1:{port}/config/ /routes.json\nCMD [\"cat\", \"/routes.json\"]\n"

    build = deployer("fetch", {"Dockerfile": dockerfile})

    assert requests_seen == [], f"the engine fetched {requests_seen} from the host's loopback"
    assert build.status == "failed"
    assert build.failure_reason.startswith(
        f"Line 2 of your Dockerfile, `ADD http://127.0.0.1:{port}/config/ /routes.json`, downloads a URL "
        f"(http://127.0.0.1:{port}/config/). Hakobune does not let ADD download")
    assert "Step 1/" not in build.full_log  # the engine never saw it


# -- the local builder, with small limits ---------------------------------------------------


def build_with(tmp_path, team, files, **options):
    """Builds an app of these files with the local builder (the real engine,
    the settings' confinement, these options); returns (log lines, error).
    `{nonce}` in a file becomes a word of this build's own, so that its steps
    run rather than come from the engine's layer cache."""
    src = tmp_path / "src"
    src.mkdir()
    nonce = secrets.token_hex(8)
    for name, text in files.items():
        (src / name).write_text(text.replace("{nonce}", nonce))
    builder = LocalDockerBuilder("local", instance=os.environ.get("HAKOBUNE_INSTANCE", "hakobune-test"),
                                 watch_seconds=0.5, **options)
    request = BuildRequest(team=team, service="limits", source_dir=src, source_digest=secrets.token_hex(16),
                           plan=detect(src).plan, workspace=tmp_path)
    lines = []
    try:
        builder.build(request, lines.append)
    except BuildError as exc:
        return lines, exc
    return lines, None


def leftovers(docker_client, team):
    """Containers and cgroups the team's builds left behind."""
    cgroups = [path.name for path in Path("/sys/fs/cgroup/pids/hakobune-builds").glob(f"{team}-*")]
    containers = [c.id for c in docker_client.containers.list(all=True, ignore_removed=True)
                  if (docker_client.api.inspect_container(c.id)["HostConfig"].get("CgroupParent") or "")
                  .startswith(f"/hakobune-builds/{team}-")]
    return cgroups + containers


def test_a_fork_bomb_in_a_build_stops_at_the_pids_limit(tmp_path, team_name, docker_client):
    _stack_is_here(docker_client)
    files = {"Dockerfile": f"FROM {STACK}\nCOPY bomb.py /bomb.py\nRUN python3 /bomb.py # {{nonce}}\n",
             "bomb.py": FORK_BOMB}
    started = time.monotonic()

    lines, error = build_with(tmp_path, team_name, files, pids_limit=64)

    assert error is not None, "the bomb's 300 processes all started:\n" + "\n".join(lines[-5:])
    assert error.user_error and not error.transient
    assert error.message.startswith("A step of your build started more processes than a build may have at once (64), "
                                    "so Hakobune stopped it.")
    assert time.monotonic() - started < 60
    assert leftovers(docker_client, team_name) == []


def test_a_build_that_writes_more_than_it_may_is_stopped(tmp_path, team_name, docker_client):
    _stack_is_here(docker_client)
    # 20 MB at a time, 30 times (600 MB unconfined), slowly enough to be watched.
    fill = "RUN for i in $(seq 1 30); do head -c 20000000 /dev/zero > /fill-$i; sleep 0.3; done # {nonce}"
    lines, error = build_with(tmp_path, team_name, {"Dockerfile": f"FROM {STACK}\n{fill}\n"}, disk_mb=50)
    try:
        assert error is not None, "the build wrote 600 MB"
        assert error.user_error
        assert error.message.startswith("Your build wrote more than 50 MiB to disk, what a build may write, so "
                                        "Hakobune stopped it.")
        assert leftovers(docker_client, team_name) == []
    finally:
        if error is None:  # the old builder kept a 600 MB image: remove it
            for image in docker_client.images.list(name=f"hakobune/{team_name}/*"):
                docker_client.images.remove(image.id, force=True)


def test_a_build_that_outlives_its_time_is_stopped_with_its_step(tmp_path, team_name, docker_client):
    _stack_is_here(docker_client)
    started = time.monotonic()
    lines, error = build_with(tmp_path, team_name, {"Dockerfile": f"FROM {STACK}\nRUN sleep 120 # {{nonce}}\n"},
                               timeout=5)
    assert isinstance(error, BuildError) and error.user_error
    assert error.message.startswith("The build took longer than 5 s, the time a build may take, and was stopped.")
    assert time.monotonic() - started < 30
    assert leftovers(docker_client, team_name) == []  # the step's container is gone, not sleeping on


def test_the_build_networks_rules_are_read_from_iptables(tmp_path, team_name, docker_client):
    """Read, never tried: no packet goes to 169.254.169.254 or a private range."""
    _stack_is_here(docker_client)
    lines, error = build_with(tmp_path, team_name, {"Dockerfile": f"FROM {STACK}\nRUN true\n"})
    assert error is None, error and error.message

    network = docker_client.networks.get(BUILD_NETWORK)
    assert network.attrs["Driver"] == "bridge" and network.attrs["EnableIPv6"] is False
    assert network.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"  # builds cannot meet
    assert network.attrs["Labels"]["org.hakobune.role"] == "builds"
    bridge = bridge_of(network)

    def rules(chain):
        return subprocess.run(["iptables", "-w", "5", "-S", chain], capture_output=True, text=True,
                              check=True).stdout.splitlines()

    tag = f'-m comment --comment "hakobune:{bridge}"'
    forward = [line for line in rules(FORWARD_CHAIN) if f"hakobune:{bridge}" in line]
    inbound = [line for line in rules(INPUT_CHAIN) if f"hakobune:{bridge}" in line]
    # Its own rules send it through the shared ones (tests/integration/test_isolation.py reads those).
    assert forward == [f"-A {FORWARD_CHAIN} -i {bridge} -o {bridge} {tag} -j RETURN",
                       f"-A {FORWARD_CHAIN} -i {bridge} {tag} -j {TEAM_OUT_CHAIN}"]
    out = rules(TEAM_OUT_CHAIN)
    assert f"-A {TEAM_OUT_CHAIN} -d 169.254.0.0/16 -j DROP" == out[1]  # metadata, first
    assert f"-A {TEAM_OUT_CHAIN} -o br-+ -j DROP" in out  # other teams' bridges
    assert f"-A {TEAM_OUT_CHAIN} -o docker0 -j DROP" in out
    for resolver in host_resolvers():
        assert f"-A {TEAM_OUT_CHAIN} -d {resolver}/32 -p udp -m udp --dport 53 -j RETURN" in out
    drops = [f"-A {TEAM_OUT_CHAIN} -d {private} -j {PRIVATE_CHAIN}" for private in PRIVATE_RANGES]
    assert out[-len(drops):] == drops  # the LAN, a VPC, a company network: after DNS, last
    assert rules(PRIVATE_CHAIN)[-1] == f"-A {PRIVATE_CHAIN} -j DROP"
    assert inbound == [f"-A {INPUT_CHAIN} -i {bridge} {tag} -j {TEAM_IN_CHAIN}"]  # the host: replies only
