"""An S3-compatible server for the backups' tests: moto's, on loopback, on a
free port, with its own bucket; and a server that answers 500 to everything
(a storage server having a bad day)."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_s3(bucket: str = "hakobune-backups"):
    """Yields the BACKUP_S3 settings of a fresh moto server on 127.0.0.1 holding `bucket`."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "bucket": bucket, "region": "us-east-1",
               "prefix": "test/", "access_key_id": "testing", "secret_access_key": "testing"}
    try:
        client = boto3.client("s3", endpoint_url=options["endpoint_url"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=bucket)
        yield options, client
    finally:
        server.stop()


class _Failing(BaseHTTPRequestHandler):
    def _fail(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
                b"<Message>We encountered an internal error. Please try again.</Message></Error>")
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _fail

    def log_message(self, *args):
        pass


@contextmanager
def failing_s3():
    """Yields BACKUP_S3 settings of a server on 127.0.0.1 that answers every request with 500."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"endpoint_url": f"http://127.0.0.1:{server.server_address[1]}", "bucket": "hakobune-backups",
               "region": "us-east-1", "prefix": "", "access_key_id": "testing", "secret_access_key": "testing"}
    finally:
        server.shutdown()
        server.server_close()
