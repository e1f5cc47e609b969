"""Upstreams that say who they are, for router tests: any number of loopback
ports served by one event loop in a thread, each answering every request
with a JSON of its own port, the path asked for and the request's headers
(keep-alive, as Caddy talks to upstreams)."""

from __future__ import annotations

import asyncio
import json
import threading


class EchoUpstreams:
    def __init__(self, count: int):
        self.count = count
        self.ports: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._servers = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EchoUpstreams:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the echo upstreams did not start")
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def address(self, index: int) -> str:
        return f"127.0.0.1:{self.ports[index]}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        for _ in range(self.count):
            server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self._servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("sockname")[1]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip()] = value.strip()
                length = int(headers.get("Content-Length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                body = json.dumps({"port": port, "path": request_line.split(" ")[1], "headers": headers}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
