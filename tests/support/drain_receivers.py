"""Log drain endpoints of the test's own, on loopback: an HTTP receiver that
records the JSON lines POSTed to it (and answers what the test tells it
to), and a syslog listener over TCP, with or without TLS, that splits what
it reads into RFC 6587 octet-counted messages."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class HttpReceiver:
    """`status` is what it answers; `requests` holds (path, headers, [entries])
    of every POST, `accepted` the entries of those answered 2xx."""

    def __init__(self, status: int = 200, port: int = 0, tls: ssl.SSLContext | None = None):
        self.status = status
        self.requests: list[tuple[str, dict, list[dict]]] = []
        self.accepted: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as log services answer

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                entries = [json.loads(line) for line in body.decode().splitlines() if line]
                status = receiver.status
                receiver.requests.append((self.path, dict(self.headers), entries))
                if 200 <= status < 300:
                    receiver.accepted.extend(entries)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def messages(self) -> list[str]:
        return [entry["message"] for entry in self.accepted]

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        return _wait(lambda: len(self.accepted) >= count, timeout, lambda: self.accepted)


class SyslogReceiver:
    """Reads every connection's octet-counted frames into `messages`."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.tls = tls
        self.messages: list[str] = []
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> SyslogReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.server.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        try:
            if self.tls is not None:
                connection.settimeout(5)
                connection = self.tls.wrap_socket(connection, server_side=True)
            connection.settimeout(10)
            buffer = b""
            while not self.stop.is_set():
                data = connection.recv(65536)
                if not data:
                    return
                buffer += data
                while b" " in buffer:
                    length, rest = buffer.split(b" ", 1)
                    if len(rest) < int(length):
                        break
                    self.messages.append(rest[:int(length)].decode())
                    buffer = rest[int(length):]
        except (OSError, ssl.SSLError):
            return
        finally:
            connection.close()

    def wait_for(self, count: int, timeout: float = 10) -> list[str]:
        return _wait(lambda: len(self.messages) >= count, timeout, lambda: self.messages)


def _wait(done, timeout: float, result):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        time.sleep(0.02)
    return result()


def self_signed_for_loopback(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1 (its own authority): the path of the
    certificate, for the client to trust, and the server's TLS context."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hakobune test drain")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "drain.crt", folder / "drain.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return cert_path, context
