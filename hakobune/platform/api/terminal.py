"""The terminal of `hakobune run`: a WebSocket at
/api/v1/teams/{team}/services/{service}/run that relays a person's terminal
to a one-off container of the service's live release (services/one_off.py).

It is an ASGI application beside Django's (asgi.py sends it the `websocket`
scopes): the relay waits on the event loop, and the engine's socket is read
by one thread of its own, so a terminal left open takes no thread from the
pages.

The conversation:
- the client opens it with `Authorization: Bearer <API token>` (cookies are
  not read, so another site's page in a person's browser cannot open one);
- the client's first message (text, JSON): {"command": "…", "tty": true,
  "rows": 24, "cols": 80};
- the server answers {"type": "started", "run": id, "release": n}, or
  {"type": "error", "code": "…", "message": "…"} and closes (4400 bad
  request, 4401 no or bad token, 4403 a viewer, 4404 not theirs or none,
  4409 refused for another reason);
- then the client's binary messages are the command's stdin; its text
  messages {"type": "resize", "rows", "cols"} and {"type": "eof"};
- the server's binary messages are output, each led by one byte naming the
  stream (1 stdout, 2 stderr; with a TTY everything is 1);
- at the end {"type": "exit", "code": n} and a normal close. When the
  terminal goes away first, the container is killed; after RUN_MAX_SECONDS
  too ({"type": "exit", "code": null, "timed_out": true})."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import struct
import threading

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import close_old_connections
from django.http import Http404

from hakobune.platform.accounts.tokens import user_for_token
from hakobune.platform.services import one_off
from hakobune.platform.services.models import OneOffRun

logger = logging.getLogger(__name__)

PATH = re.compile(r"^/api/v1/teams/(?P<team>[a-z0-9-]+)/services/(?P<service>[a-z0-9-]+)/run/?$")
STDOUT, STDERR = 1, 2
READ_SIZE = 65536


class Closed(Exception):
    """The conversation ends with this close code and message."""

    def __init__(self, close_code: int, code: str, message: str):
        super().__init__(message)
        self.close_code, self.code, self.message = close_code, code, message


def _with_connections(function):
    """`function` with the connection hygiene a request would have (it runs
    outside one, in a thread)."""

    def call(*args, **kwargs):
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return call


def _in_database(function):
    """`function` on Django's thread for synchronous work."""
    return sync_to_async(_with_connections(function))


def _authorize_and_open(headers: dict[bytes, bytes], team: str, service: str, request: dict) -> OneOffRun:
    keyword, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    user = None
    if keyword.lower() == "bearer" and token.strip():
        user, _ = user_for_token(token.strip())
    if user is None:
        raise Closed(4401, "not_authenticated", "Give a valid API token (`hakobune login`), as `Authorization: Bearer …`.")
    command, tty = request.get("command"), request.get("tty", False)
    if not isinstance(command, str) or not isinstance(tty, bool):
        raise Closed(4400, "bad_request", 'The first message must be {"command": "…", "tty": true or false}.')
    try:
        return one_off.open_run(user, team, service, command, tty=tty)
    except Http404:
        raise Closed(4404, "not_found", f"No service {service} in a team {team} of yours.")
    except PermissionDenied as exc:
        raise Closed(4403, "permission_denied", str(exc) or "Viewers may not run commands.")
    except one_off.OneOffRefused as exc:
        raise Closed(4409, exc.code, exc.message)


def _size(request: dict) -> tuple[int, int]:
    def number(key, default):
        value = request.get(key, default)
        return min(max(int(value), 1), 1000) if isinstance(value, int) else default

    return number("rows", 24), number("cols", 80)


def _recv_exactly(sock, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _pump(session, loop: asyncio.AbstractEventLoop, output: asyncio.Queue) -> None:
    """Reads the container's output (a thread of its own) into `output`;
    None at its end."""
    sock = session.socket

    def put(item):
        loop.call_soon_threadsafe(output.put_nowait, item)

    try:
        if session.multiplexed:
            # The engine's frames: stream (1 byte), 3 zero bytes, size (4 bytes, big-endian).
            while (header := _recv_exactly(sock, 8)) is not None:
                stream, size = header[0], struct.unpack(">I", header[4:])[0]
                data = _recv_exactly(sock, size)
                if data is None:
                    break
                put((STDERR if stream == 2 else STDOUT, data))
        else:
            while chunk := sock.recv(READ_SIZE):
                put((STDOUT, chunk))
    except OSError:
        pass  # the socket was closed: the run is being ended
    finally:
        put(None)


async def terminal(scope, receive, send) -> None:
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    found = PATH.match(scope.get("path", ""))
    if found is None:
        await send({"type": "websocket.close", "code": 4404})
        return
    await send({"type": "websocket.accept"})

    async def say(message: dict) -> None:
        await send({"type": "websocket.send", "text": json.dumps(message)})

    run = session = None
    try:
        first = await receive()
        if first["type"] == "websocket.disconnect":
            return
        try:
            request = json.loads(first.get("text") or "")
            if not isinstance(request, dict):
                raise ValueError
        except ValueError:
            raise Closed(4400, "bad_request", 'The first message must be JSON: {"command": "…", "tty": true}.')
        run = await _in_database(_authorize_and_open)(dict(scope.get("headers") or []), found["team"],
                                                      found["service"], request)
        rows, cols = _size(request)
        try:
            session = await asyncio.to_thread(_with_connections(one_off.attach), run, rows=rows, cols=cols)
        except one_off.OneOffRefused as exc:
            raise Closed(4409, exc.code, exc.message)
        await say({"type": "started", "run": run.id, "release": run.release.number if run.release else None})
        await _relay(run, session, receive, send, say)
    except Closed as closed:
        await say({"type": "error", "code": closed.code, "message": closed.message})
        await send({"type": "websocket.close", "code": closed.close_code})
    except Exception:
        logger.exception("the terminal of run %s failed", run.id if run else "-")
        if run is not None:
            await _in_database(one_off.finish)(run, OneOffRun.Status.FAILED, detail="Hakobune failed while relaying it")
        await say({"type": "error", "code": "internal",
                   "message": "Hakobune failed while running the command (an internal error, not your app)."})
        await send({"type": "websocket.close", "code": 1011})
    finally:
        if session is not None:
            await asyncio.to_thread(session.remove)


async def _relay(run: OneOffRun, session, receive, send, say) -> None:
    loop = asyncio.get_running_loop()
    output: asyncio.Queue = asyncio.Queue()
    threading.Thread(target=_pump, args=(session, loop, output), daemon=True, name=f"one-off-{run.id}").start()

    async def forward_output():
        while (item := await output.get()) is not None:
            stream, data = item
            await send({"type": "websocket.send", "bytes": bytes([stream]) + data})

    async def forward_input():
        """Until the terminal goes away: returns then."""
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes"):
                await asyncio.to_thread(session.socket.sendall, message["bytes"])
                continue
            try:
                control = json.loads(message.get("text") or "{}")
            except ValueError:
                continue
            if control.get("type") == "resize":
                rows, cols = _size(control)
                await asyncio.to_thread(session.resize, rows, cols)
            elif control.get("type") == "eof":
                await asyncio.to_thread(session.close_stdin)

    output_done = asyncio.ensure_future(forward_output())
    input_done = asyncio.ensure_future(forward_input())
    # The command's end (its output ends), the terminal's, or its time limit.
    done, _ = await asyncio.wait({output_done, input_done}, timeout=settings.RUN_MAX_SECONDS,
                                 return_when=asyncio.FIRST_COMPLETED)
    if output_done in done:
        input_done.cancel()
        code = await asyncio.to_thread(session.exit_code)
        # Gone before the terminal hears the end: nothing of it outlives the command.
        await asyncio.to_thread(session.remove)
        await _in_database(one_off.finish)(run, OneOffRun.Status.EXITED, exit_code=code)
        await say({"type": "exit", "code": code})
        await send({"type": "websocket.close", "code": 1000})
    elif input_done in done:
        output_done.cancel()
        await _in_database(one_off.finish)(run, OneOffRun.Status.DISCONNECTED,
                                           detail="the terminal went away; the command was stopped")
    else:
        output_done.cancel()
        input_done.cancel()
        await asyncio.to_thread(session.remove)
        await _in_database(one_off.finish)(
            run, OneOffRun.Status.TIMED_OUT, detail=f"it ran longer than {settings.RUN_MAX_SECONDS} s and was stopped"
        )
        await say({"type": "exit", "code": None, "timed_out": True})
        await send({"type": "websocket.close", "code": 1000})
