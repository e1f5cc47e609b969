"""A webhook receiver of the test's own on loopback: keeps each POST's path
and JSON body, and answers with `answer` (200, or 500 for a receiver that
fails). The notification tests name its address in the SSRF guard's test
allow-list (NOTIFY_ALLOWED_HOSTS)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.received: list[dict] = []
        self.answer = 200
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hooks/hakobune?token=s3cret-token"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append({"path": self.path, "json": json.loads(body or b"null")})
        self.send_response(self.server.answer)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@contextmanager
def webhook_receiver(port: int = 0):
    server = Receiver(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
