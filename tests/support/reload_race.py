"""Route switches under traffic, for a test and a benchmark: a Caddy of its
own on free loopback ports, two upstreams answering "a" and "b", and client
threads opening a new connection per request while Hakobune's Router switches
the route between the upstreams, as deploys do."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from hakobune.runtime.router import CaddyRouter, Route
from tests.support.ports import free_port

MIGRATE = Path("/proc/sys/net/ipv4/tcp_migrate_req")
HOSTNAME = "race.localhost"


@dataclass
class RaceResult:
    switches: int
    ok: int = 0
    failures: list[str] = field(default_factory=list)


def _upstream(answer: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_reload_race(*, switches: int = 100, clients: int = 8) -> RaceResult:
    admin_port, http_port = free_port(), free_port()
    upstreams = [_upstream(b"a"), _upstream(b"b")]
    addresses = [f"127.0.0.1:{server.server_address[1]}" for server in upstreams]
    with tempfile.TemporaryDirectory(prefix="hakobune-reload-race-") as home:
        boot = Path(home) / "boot.json"
        boot.write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{admin_port}"}}))
        caddy = subprocess.Popen(
            ["caddy", "run", "--config", str(boot)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home},
        )
        try:
            router = CaddyRouter(f"http://127.0.0.1:{admin_port}", http_port)
            deadline = time.monotonic() + 15
            while True:
                try:
                    router.load([Route(HOSTNAME, (addresses[0],))])
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            result = RaceResult(switches=switches)
            stop = threading.Event()
            lock = threading.Lock()

            def client():
                while not stop.is_set():
                    session = requests.Session()
                    session.trust_env = False
                    try:
                        answer = session.get(f"http://127.0.0.1:{http_port}/", headers={"Host": HOSTNAME}, timeout=10)
                        with lock:
                            if answer.status_code == 200:
                                result.ok += 1
                            else:
                                result.failures.append(f"HTTP {answer.status_code}")
                    except requests.RequestException as exc:
                        with lock:
                            result.failures.append(type(exc).__name__)
                    finally:
                        session.close()

            threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
            for thread in threads:
                thread.start()
            for number in range(switches):
                router.set_route(Route(HOSTNAME, (addresses[(number + 1) % 2],)))
                time.sleep(0.02)
            stop.set()
            for thread in threads:
                thread.join(timeout=15)
            return result
        finally:
            caddy.terminate()
            caddy.wait(timeout=10)
            for server in upstreams:
                server.shutdown()
                server.server_close()
