"""A real git server for tests: git's own `http-backend` behind a small WSGI
server on loopback, serving bare repositories from a folder. A repository
whose name starts with "private-" asks for HTTP Basic credentials whose
password is the server's token, as GitHub does for a token."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from socketserver import ThreadingMixIn


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class GitServer:
    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 0, token: str = "s3cr3t-token"):
        self.root = root
        self.token = token
        self.requests: list[dict] = []
        self.server = make_server(host, port, self.app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        self.host, self.port = self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> GitServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}.git"

    def app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        self.requests.append(
            {"path": path, "query": environ.get("QUERY_STRING", ""), "authorization": environ.get("HTTP_AUTHORIZATION", "")}
        )
        repository = path.lstrip("/").split("/", 1)[0]
        if repository.startswith("private-") and not self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Type", "text/plain")])
            return [b"authentication required\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        cgi_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": path,
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": environ.get("REMOTE_ADDR", "127.0.0.1"),
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
        }
        result = subprocess.run(["git", "http-backend"], input=body, env=cgi_env, capture_output=True, check=False)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        status = "200 OK"
        headers = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = value.strip()
            elif key:
                headers.append((key.strip(), value.strip()))
        start_response(status, headers)
        return [payload]

    def _authorized(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            _, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return password == self.token


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


class Repository:
    """A working copy that pushes to a bare repository the server serves."""

    def __init__(self, server: GitServer, name: str, work: Path):
        self.server = server
        self.name = name
        self.bare = server.root / f"{name}.git"
        self.work = work
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=server.root)
        git("config", "http.receivepack", "true", cwd=self.bare)
        git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=self.bare)
        work.mkdir(parents=True)
        git("init", "--quiet", "--initial-branch=main", cwd=work)

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, *refs: str) -> None:
        git("push", "--quiet", str(self.bare), *(refs or ("main",)), cwd=self.work)

    def tag(self, name: str) -> None:
        git("tag", name, cwd=self.work)
        git("push", "--quiet", str(self.bare), name, cwd=self.work)
