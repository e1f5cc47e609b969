"""The waker: the portal's answer to the first requests of a sleeping service.

The router sends a sleeping service's requests to the portal under
/_hakobune/wake/, with a secret header (router.WAKER_HEADER) that it sets on
that route alone; a request without it did not come from the router and is
refused. One request wakes the service, in a thread of the waker's own
(at most WAKER_MAX_WAKES per process), and every request that comes meanwhile,
in any portal process, waits for that wake through Redis, on the event loop,
for at most WAKER_WAIT_SECONDS. The service's answer is streamed back, cut off
past WAKER_MAX_ANSWER_BYTES. No request holds a thread while it waits or while
the answer streams."""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor

import httpx
from django.conf import settings
from django.db import connections
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.encoding import escape_uri_path

from hakobune.platform.locks import database_scope, redis_client
from hakobune.runtime.router import WAKER_HEADER, WAKE_HOST_HEADER, WAKE_PREFIX

from . import scaling

logger = logging.getLogger(__name__)

# Headers that belong to one connection, not to the request or answer.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade",
})
# How often a waiting request looks whether the wake is done.
POLL_SECONDS = 0.2
# How long a wake may take in all, the lock wait included, before another
# request may start one again (a portal process that died while waking).
WAKE_ALLOWANCE_SECONDS = 300
# After a wake: how long requests that saw it start can still read its outcome.
OUTCOME_SECONDS = 60
CLAIM_AFTER_WAKE_SECONDS = 10

_executor: ThreadPoolExecutor | None = None


def came_from_router(request) -> bool:
    """Whether the request carries the router's secret. A client cannot send
    it through the router (the route overwrites or deletes the header), and a
    request straight to the portal does not know it."""
    secret = settings.WAKER_SECRET
    given = request.headers.get(WAKER_HEADER, "")
    return bool(secret) and hmac.compare_digest(given.encode(), secret.encode())


def text_answer(status: int, words: str, *, retry_after: int | None = None) -> HttpResponse:
    response = HttpResponse(words.rstrip("\n") + "\n", status=status, content_type="text/plain; charset=utf-8")
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response


# -- waking, once for all the requests that wait ---------------------------------------------


def _claim_key(service_id: int) -> str:
    return f"hakobune:waking:{database_scope()}:{service_id}"


def _outcome_key(service_id: int, token: str) -> str:
    return f"hakobune:woken:{database_scope()}:{service_id}:{token}"


def _wake_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=max(1, settings.WAKER_MAX_WAKES), thread_name_prefix="hakobune-wake")
    return _executor


def _wake_and_tell(service_id: int, token: str) -> None:
    """Runs in a thread of the waker's executor: wakes the service and leaves
    the outcome in Redis for every request waiting on this wake."""
    try:
        outcome = scaling.wake_sleeping(service_id, lock_wait=settings.WAKER_WAIT_SECONDS)
    except Exception:
        logger.exception("waking service %s failed", service_id)
        outcome = scaling.WakeOutcome(problem="the platform failed to start it; its administrator can read why in the portal's log")
    finally:
        connections.close_all()
    store = redis_client()
    store.set(_outcome_key(service_id, token), outcome.to_json(), ex=OUTCOME_SECONDS)
    # Requests that saw this wake begin still find its outcome; soon after,
    # a later request (the service asleep again) starts a wake of its own.
    if store.get(_claim_key(service_id)) == token.encode():
        store.expire(_claim_key(service_id), CLAIM_AFTER_WAKE_SECONDS)


async def _redis(method, *args, **kwargs):
    return await asyncio.to_thread(method, *args, **kwargs)


async def wait_until_awake(service_id: int) -> scaling.WakeOutcome | None:
    """Starts the service's wake unless one is under way, and waits for its
    outcome; None when it is not done within WAKER_WAIT_SECONDS."""
    loop = asyncio.get_running_loop()
    store = redis_client()
    deadline = loop.time() + settings.WAKER_WAIT_SECONDS
    token = None
    while True:
        if token is None:
            mine = secrets.token_hex(8)
            claimed = await _redis(store.set, _claim_key(service_id), mine, nx=True,
                                   ex=settings.WAKER_WAIT_SECONDS + WAKE_ALLOWANCE_SECONDS)
            if claimed:
                token = mine
                loop.run_in_executor(_wake_executor(), _wake_and_tell, service_id, mine)
            else:
                current = await _redis(store.get, _claim_key(service_id))
                token = current.decode() if current else None
        if token is not None:
            told = await _redis(store.get, _outcome_key(service_id, token))
            if told is not None:
                return scaling.WakeOutcome.from_json(told)
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(POLL_SECONDS)


# -- passing the request on, and the answer back ---------------------------------------------


class AnswerTooLarge(Exception):
    pass


def upstream_path(request) -> str:
    """The path the client asked for, as it sent it (percent-escapes kept),
    without the prefix the router put before it."""
    raw = (getattr(request, "scope", None) or {}).get("raw_path")
    path = raw.decode("latin-1").split("?", 1)[0] if raw else escape_uri_path(request.path)
    if path.startswith(WAKE_PREFIX):
        path = path[len(WAKE_PREFIX):]
    return path if path.startswith("/") else "/" + path


def _request_headers(request, host: str) -> list[tuple[str, str]]:
    dropped = HOP_BY_HOP | {"host", "content-length", WAKER_HEADER.lower(), WAKE_HOST_HEADER.lower()}
    headers = [(name, value) for name, value in request.headers.items() if name.lower() not in dropped]
    headers.append(("Host", host))
    return headers


async def forward(request, upstream: str, host: str) -> HttpResponse:
    """Sends the request on to the woken service and streams its answer back,
    at most WAKER_MAX_ANSWER_BYTES of it."""
    cap = settings.WAKER_MAX_ANSWER_BYTES
    query = request.META.get("QUERY_STRING", "")
    url = f"http://{upstream}{upstream_path(request)}" + (f"?{query}" if query else "")
    body = request.body  # within DATA_UPLOAD_MAX_MEMORY_SIZE, else RequestDataTooBig (a 400)
    client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0), trust_env=False, follow_redirects=False)
    try:
        outgoing = client.build_request(request.method, url, headers=_request_headers(request, host), content=body or None)
        answer = await client.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        return text_answer(502, f"The service woke but did not answer: {exc}")
    length = answer.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        await answer.aclose()
        await client.aclose()
        return text_answer(502, f"The service is awake now, but its answer to this first request is larger than the "
                                f"waker passes on ({cap} bytes): send the request again.", retry_after=1)
    response = StreamingHttpResponse(_relay(answer, client, cap), status=answer.status_code)
    del response["Content-Type"]
    for name, value in answer.headers.multi_items():
        lower = name.lower()
        if lower in HOP_BY_HOP:
            continue
        if lower == "set-cookie":
            response.cookies.load(value)
        else:
            response[name] = value
    return response


async def _relay(answer: httpx.Response, client: httpx.AsyncClient, cap: int):
    sent = 0
    try:
        async for chunk in answer.aiter_raw():
            sent += len(chunk)
            if sent > cap:
                # Cut off: the client sees an unfinished answer, not a short one.
                logger.warning("the answer from %s passed %s bytes; cut off", answer.url.host, cap)
                raise AnswerTooLarge(f"the answer passed {cap} bytes")
            yield chunk
    finally:
        await answer.aclose()
        await client.aclose()
