"""A TCP listener of the test's own on the host, recording who connected:
how tests show that a container or a build step reached nothing of the
host (the listener saw no one), or that the host itself can reach it."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager


@contextmanager
def host_listener(address: str):
    """Listens on `address` (a bridge's gateway, or 0.0.0.0 for every address
    of the host); yields (port, the peers it accepted)."""
    server = socket.create_server((address, 0))
    server.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, peer = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(peer)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()
