"""Git sources kept in their place, against real git servers on loopback
(issue #12, findings 3 and 8): the token goes to the repository's own URL
and to no submodule; a host written with a trailing dot is still pinned; a
proxy in the worker's environment is not used (the administrator's is); a
chain of links in a repository is refused. Every server and listener here is
one the test starts on 127.0.0.0/8; the policy of each test allows exactly
those."""

import os
import socket
import subprocess
import threading

import pytest

from hakobune.worker.gitfetch import GitSource, fetch_git
from hakobune.worker.netguard import Policy
from hakobune.worker.source import SourceError
from tests.support.gitserver import GitServer, Repository, git

pytestmark = pytest.mark.integration

APP = {"app.py": "from flask import Flask\napp = Flask(__name__)\n", "requirements.txt": "flask\n"}
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy")


@pytest.fixture
def servers(tmp_path):
    started = []

    def start(host="127.0.0.1"):
        root = tmp_path / f"server-{len(started)}"
        root.mkdir()
        server = GitServer(root, host=host, port=0).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def policy_for(*host_ports: str) -> Policy:
    return Policy(http_hosts=frozenset(host_ports), allowed_hosts=frozenset(host_ports))


def add_submodule(parent: Repository, url: str, path: str, written_url: str | None = None) -> None:
    git("-c", "protocol.file.allow=always", "submodule", "add", "--quiet", url, path, cwd=parent.work)
    if written_url:
        git("config", "--file", ".gitmodules", f"submodule.{path}.url", written_url, cwd=parent.work)
        git("add", ".gitmodules", cwd=parent.work)
    git("commit", "--quiet", "-m", f"add {path}", cwd=parent.work)


def library(server: GitServer, name: str, tmp_path) -> Repository:
    repository = Repository(server, name, tmp_path / f"work-{name}")
    repository.commit({"lib.py": f"NAME = {name!r}\n"})
    repository.push()
    return repository


def test_a_submodule_on_another_host_or_path_never_receives_the_token(servers, tmp_path):
    main, other = servers(), servers()
    elsewhere = library(other, "library", tmp_path)  # another host (another origin)
    beside = library(main, "shared-lib", tmp_path)  # the same host, another path
    parent = Repository(main, "private-parent", tmp_path / "work-parent")
    parent.commit(APP)
    add_submodule(parent, elsewhere.url, "vendor/elsewhere")
    add_submodule(parent, beside.url, "vendor/beside")
    parent.push()
    main.requests.clear()
    other.requests.clear()

    fetched = fetch_git(GitSource(url=parent.url, ref="main", token=main.token, submodules=True), tmp_path / "src",
                        policy=policy_for(f"127.0.0.1:{main.port}", f"127.0.0.1:{other.port}"),
                        log=lambda line: None)

    assert (fetched.root / "vendor" / "elsewhere" / "lib.py").read_text() == "NAME = 'library'\n"
    assert (fetched.root / "vendor" / "beside" / "lib.py").read_text() == "NAME = 'shared-lib'\n"
    own = [request for request in main.requests if request["path"].startswith("/private-parent.git/")]
    assert own and all(request["authorization"] for request in own)
    assert other.requests and not [request for request in other.requests if request["authorization"]]
    to_beside = [request for request in main.requests if request["path"].startswith("/shared-lib.git/")]
    assert to_beside and not [request for request in to_beside if request["authorization"]]


def test_a_host_written_with_a_trailing_dot_is_still_pinned(servers, tmp_path):
    """The server listens on 127.0.0.2 only; the test's resolver says
    `localhost` is 127.0.0.2. Only the pin can bring git there: by itself
    git would look up `localhost.` (with no answer from /etc/hosts, through
    DNS) and find no server. The submodule's address has the dot too."""
    server = servers("127.0.0.2")
    lib = library(server, "lib", tmp_path)
    parent = Repository(server, "app", tmp_path / "work-app")
    parent.commit(APP)
    add_submodule(parent, lib.url, "vendor/lib", written_url=f"http://LOCALHOST.:{server.port}/lib.git")
    parent.push()
    asked = []

    def resolver(host, port):
        asked.append(host)
        assert host == "localhost"
        return ["127.0.0.2"]

    fetched = fetch_git(GitSource(url=f"http://localhost.:{server.port}/app.git", ref="main", submodules=True),
                        tmp_path / "src", policy=policy_for(f"localhost:{server.port}"), resolver=resolver,
                        log=lambda line: None)
    assert (fetched.root / "app.py").is_file()
    assert (fetched.root / "vendor" / "lib" / "lib.py").read_text() == "NAME = 'lib'\n"
    assert fetched.url == f"http://localhost:{server.port}/app.git"
    assert asked == ["localhost", "localhost"]


class Listener:
    """A TCP listener on loopback that counts connections and closes each.
    It polls, so that closing it never leaves a thread in accept() holding
    the port (a later server could otherwise be given the same one)."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.port = self.socket.getsockname()[1]
        self.accepted = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            connection.close()

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        self.socket.close()


@pytest.fixture
def listener():
    started = Listener()
    yield started
    started.close()


def test_a_proxy_in_the_workers_environment_is_not_used(servers, tmp_path, listener, monkeypatch):
    server = servers()
    repo = library(server, "plain", tmp_path)
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, f"http://127.0.0.1:{listener.port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    # The listener would see a git that took the variables:
    control = subprocess.run(["git", "ls-remote", repo.url], capture_output=True, timeout=60,
                             env={**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"})
    assert control.returncode != 0 and listener.accepted >= 1
    seen = listener.accepted

    fetched = fetch_git(GitSource(url=repo.url, ref="main"), tmp_path / "src",
                        policy=policy_for(f"127.0.0.1:{server.port}"), log=lambda line: None)
    assert (fetched.root / "lib.py").is_file()
    assert listener.accepted == seen


def test_the_administrators_proxy_is_used(servers, tmp_path, listener):
    """SOURCE_GIT_PROXY: git goes to that proxy (here a listener that hangs up)."""
    server = servers()
    repo = library(server, "proxied", tmp_path)
    server.requests.clear()
    with pytest.raises(SourceError):
        fetch_git(GitSource(url=repo.url, ref="main"), tmp_path / "src", policy=policy_for(f"127.0.0.1:{server.port}"),
                  proxy=f"http://127.0.0.1:{listener.port}", log=lambda line: None)
    assert listener.accepted >= 1 and server.requests == []


def test_a_repository_with_a_chain_of_links_is_refused(servers, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    server = servers()
    repo = Repository(server, "chain", tmp_path / "work-chain")
    repo.commit(APP)
    depth = 24
    os.symlink("d/" * depth + "../" * depth + str(outside).lstrip("/"), repo.work / "esc")
    os.symlink("esc", repo.work / ".hakobune")
    os.symlink(".", repo.work / "d")
    git("add", "--all", cwd=repo.work)
    git("commit", "--quiet", "-m", "links", cwd=repo.work)
    repo.push()
    with pytest.raises(SourceError, match=r"The source has a link '[^']+' that leads to another link"):
        fetch_git(GitSource(url=repo.url, ref="main"), tmp_path / "src", policy=policy_for(f"127.0.0.1:{server.port}"),
                  log=lambda line: None)
    assert list(outside.iterdir()) == []
