"""The python stack, resolved on a host where no image registry can be reached.

Real Docker Engine; debootstrap from Debian's mirror the first time (about a minute),
a re-import of the cached root filesystem afterwards (seconds). The cache is the one
the platform uses ($HAKOBUNE_DATA_DIR/stacks, default ./var/stacks)."""

import hashlib
import http.client
import os
import socket
import threading
import time
from pathlib import Path

import pytest

docker = pytest.importorskip("docker")

from hakobune.worker import stacks  # noqa: E402

pytestmark = pytest.mark.integration

LANGUAGE = "python"
SUITE = os.environ.get("STACK_DEBIAN_SUITE", "bookworm")
MIRROR = os.environ.get("STACK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
CA_BUNDLE = os.environ.get("BUILD_CA_BUNDLE", HOST_CA if Path(HOST_CA).exists() else "")
# Nothing listens on port 9 of loopback: the pull is refused at once, and no
# request ever leaves the host.
UNREACHABLE_IMAGE = "127.0.0.1:9/hakobune-test/no-such-image:1"
LOCAL_REF = stacks.local_stack_ref(LANGUAGE, SUITE)


def _cache_dir() -> Path:
    if os.environ.get("HAKOBUNE_STACK_CACHE"):
        return Path(os.environ["HAKOBUNE_STACK_CACHE"])
    root = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("HAKOBUNE_DATA_DIR", root / "var")) / "stacks"


@pytest.fixture(scope="module")
def client():
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker Engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def built(client):
    """Resolve the stack with the local image removed and the configured image
    unpullable, so the only way left is the local build."""
    cache_dir = _cache_dir()
    cached = (cache_dir / f"stack-{LANGUAGE}-{SUITE}.tar").is_file()
    if not cached and (os.geteuid() != 0 or stacks._find_debootstrap() is None):
        pytest.skip("building a stack needs root and debootstrap")
    original_id = client.images.get(LOCAL_REF).id if stacks.image_present(client, LOCAL_REF) else None
    if original_id:
        # Untag only: images built on it keep their layers.
        client.images.remove(LOCAL_REF, noprune=True)
    lines = []
    stack = stacks.resolve_stack(
        client,
        LANGUAGE,
        UNREACHABLE_IMAGE,
        suite=SUITE,
        mirror=MIRROR,
        ca_bundle=CA_BUNDLE or None,
        cache_dir=cache_dir,
        allow_pull=True,
        allow_build=True,
        log=lines.append,
    )
    yield stack, lines
    if original_id:
        # Put the host's own stack back, so that the layer cache of every app
        # image built on it stays valid; drop the copy imported here.
        imported_id = client.images.get(LOCAL_REF).id
        repository, tag = LOCAL_REF.rsplit(":", 1)
        client.images.get(original_id).tag(repository, tag)
        if imported_id != original_id:
            client.images.remove(imported_id, noprune=False)


def run(client, ref, command, **kwargs):
    kwargs.setdefault("network_disabled", True)
    output = client.containers.run(ref, command, remove=True, stdout=True, stderr=True, **kwargs)
    return output.decode().strip()


def test_resolves_to_a_local_build_without_a_registry(built, client):
    stack, lines = built
    assert stack.language == LANGUAGE
    assert stack.ref == LOCAL_REF
    assert stack.origin == "local"
    assert "Python 3." in stack.version
    assert any("Could not pull" in line for line in lines)
    assert stacks.image_present(client, LOCAL_REF)
    assert stacks.stack_version(client, LOCAL_REF) == stack.version


def test_image_has_python3_and_a_working_venv(built, client):
    stack, _ = built
    out = run(
        client,
        stack.ref,
        ["sh", "-c", "python3 -m venv /tmp/venv && /tmp/venv/bin/python -c 'import sys, pip; print(sys.prefix)'"],
        user="10001:10001",
        tmpfs={"/tmp": ""},
    )
    assert out.splitlines()[-1] == "/tmp/venv"


def test_default_command_and_environment(built, client):
    stack, _ = built
    config = client.images.get(stack.ref).attrs["Config"]
    assert config["Cmd"] == ["python3"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["LANG"] == "C.UTF-8"
    assert "/usr/bin" in env["PATH"]
    assert config["Labels"][stacks.VERSION_LABEL] == stack.version


@pytest.mark.skipif(not CA_BUNDLE, reason="no CA bundle configured")
def test_ca_bundle_is_installed_and_used(built, client):
    stack, _ = built
    want = hashlib.sha256(Path(CA_BUNDLE).read_bytes()).hexdigest()
    out = run(client, stack.ref, ["sha256sum", stacks.CA_BUNDLE_PATH])
    assert out.split()[0] == want
    env = dict(item.split("=", 1) for item in client.images.get(stack.ref).attrs["Config"]["Env"])
    for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        assert env[name] == stacks.CA_BUNDLE_PATH


def test_unprivileged_app_user_exists(built, client):
    stack, _ = built
    assert run(client, stack.ref, ["getent", "passwd", "app"]).split(":")[2:6] == [
        "10001", "10001", "Hakobune app", "/app",
    ]
    assert run(client, stack.ref, ["getent", "group", "10001"]).startswith("app:x:10001:")
    assert run(client, stack.ref, ["id", "-un"], user="10001:10001") == "app"
    assert run(client, stack.ref, ["stat", "-c", "%u:%g", "/app"]) == "10001:10001"


def test_second_resolve_finds_the_image_without_building(built, client, monkeypatch):
    def no_debootstrap(*args, **kwargs):
        raise AssertionError("debootstrap must not run when the stack image exists")

    monkeypatch.setattr(stacks, "_debootstrap", no_debootstrap)
    lines = []
    stack = stacks.resolve_stack(
        client,
        LANGUAGE,
        UNREACHABLE_IMAGE,
        suite=SUITE,
        mirror=MIRROR,
        ca_bundle=CA_BUNDLE or None,
        cache_dir=_cache_dir(),
        allow_pull=False,
        allow_build=False,
        log=lines.append,
    )
    assert stack == built[0]
    assert lines == []


def test_no_image_and_nothing_allowed_is_an_actionable_error(client, tmp_path):
    with pytest.raises(stacks.StackError) as excinfo:
        stacks.resolve_stack(
            client,
            LANGUAGE,
            UNREACHABLE_IMAGE,
            suite="hakobune-test-no-such-suite",
            cache_dir=tmp_path,
            allow_pull=False,
            allow_build=False,
            log=lambda line: None,
        )
    message = str(excinfo.value)
    assert "stack build python" in message
    assert UNREACHABLE_IMAGE in message


def test_a_registry_that_never_answers_does_not_hang_the_pull(client):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)  # held open, never answered

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    try:
        ok, reason = stacks.pull_image(client, f"127.0.0.1:{port}/hakobune-test/hangs:1", timeout=1, log=lambda line: None)
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
    assert not ok
    assert "did not answer" in reason


# --- the node, go, static and java stacks ---------------------------------------------------

OTHER_STACKS = {
    # language: (command run as the app user, what its output starts with, what the version names)
    "node": (["sh", "-c", "node --version && npm --version"], "v18.", "Node.js 18."),
    "go": (["go", "version"], "go version go1.23", "Go 1.23"),
    "static": (["lighttpd", "-v"], "lighttpd/1.4", "lighttpd 1.4"),
    "java": (["sh", "-c", "java -version 2>&1 && mvn -B -v"], 'openjdk version "17.', "Java 17."),
}


@pytest.fixture(scope="module", params=sorted(OTHER_STACKS))
def other_stack(request, client):
    """The stack as the platform resolves it with no registry: the image on this
    host, else re-imported from the cached tarball, else built (root only)."""
    language = request.param
    cache_dir = _cache_dir()
    ref = stacks.local_stack_ref(language, SUITE)
    cached = (cache_dir / f"stack-{language}-{SUITE}.tar").is_file()
    if not stacks.image_present(client, ref) and not cached and (
        os.geteuid() != 0 or stacks._find_debootstrap() is None
    ):
        pytest.skip("building a stack needs root and debootstrap")
    stack = stacks.resolve_stack(
        client, language, UNREACHABLE_IMAGE, suite=SUITE, mirror=MIRROR, ca_bundle=CA_BUNDLE or None,
        cache_dir=cache_dir, allow_pull=False, allow_build=True, log=lambda line: None,
    )
    return language, stack


def test_each_stack_has_its_tool_for_the_app_user_and_records_its_version(other_stack, client):
    language, stack = other_stack
    command, output_start, version_words = OTHER_STACKS[language]
    assert stack.ref == stacks.local_stack_ref(language, SUITE) and stack.origin == "local"
    assert version_words in stack.version and "Debian" in stack.version
    out = run(client, stack.ref, command, user="10001:10001", tmpfs={"/tmp": ""}, environment={"HOME": "/tmp"})
    assert out.startswith(output_start), out
    assert client.images.get(stack.ref).attrs["Config"]["Labels"][stacks.VERSION_LABEL] == stack.version


def test_the_static_stack_serves_a_folder_on_port_from_the_environment(client):
    ref = stacks.local_stack_ref("static", SUITE)
    if not stacks.image_present(client, ref):
        pytest.skip("the static stack is not on this host")
    # The server must start unprivileged on a read-only root with $PORT and $SITE_ROOT.
    container = client.containers.run(
        ref, ["lighttpd", "-D", "-f", "/etc/lighttpd/hakobune.conf"], detach=True, user="10001:10001",
        read_only=True, tmpfs={"/tmp": ""}, environment={"PORT": "8081", "SITE_ROOT": "/etc/lighttpd"},
        ports={"8081/tcp": ("127.0.0.1", None)}, cap_drop=["ALL"],
    )
    try:
        deadline = time.monotonic() + 15
        answer = None
        while time.monotonic() < deadline and answer is None:
            container.reload()
            binding = (container.attrs["NetworkSettings"]["Ports"] or {}).get("8081/tcp")
            if binding:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", int(binding[0]["HostPort"]), timeout=2)
                    connection.request("GET", "/hakobune.conf")
                    response = connection.getresponse()
                    answer = (response.status, response.read().decode())
                except OSError:
                    time.sleep(0.2)
            else:
                time.sleep(0.2)
        assert answer is not None, container.logs().decode()
        status, body = answer
        assert status == 200 and "server.port = env.PORT" in body
    finally:
        container.remove(force=True)
