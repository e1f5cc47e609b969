"""How the portal is served: gunicorn's ASGI worker, an asyncio event loop per
process (docs/architecture.md, "Long-lived connections"). Page views are
synchronous Django and each runs in a thread of its own request; streams
(followed logs) and the waker wait on the event loop and hold no thread.

Read by scripts/portal.sh (which `make run` and the tests start), the
Dockerfile and docker-compose.yml:
    gunicorn -c python:hakobune.platform.gunicorn_conf hakobune.platform.asgi
"""

import os

_data_dir = os.environ.get("HAKOBUNE_DATA_DIR") or os.path.join(os.getcwd(), "var")

bind = [f"{os.environ.get('PORTAL_BIND', '127.0.0.1')}:{os.environ.get('PORTAL_PORT', '8000')}"]
worker_class = "asgi"
workers = int(os.environ.get("PORTAL_WORKERS", "2"))
# How long an idle kept-alive connection stays open. gunicorn's default (2 s)
# is shorter than the pauses of a person between two clicks or of a client
# polling every few seconds: the server then closes the connection just as the
# client sends its next request on it, and that request fails with no answer
# ("Remote end closed connection without response"; 2 % of requests under
# bench/portal_load.py). Idle connections cost no thread in the ASGI worker.
keepalive = int(os.environ.get("PORTAL_KEEPALIVE", "75"))
# Django speaks no ASGI lifespan protocol.
asgi_lifespan = "off"
# gunicorn's control socket (for gunicornc), beside the pid files, so that two
# portals on one host (a test run beside `make run`) never share one.
control_socket = os.path.join(_data_dir, "run", "portal.ctl")
# A stopped portal lets open streams end for this long.
graceful_timeout = 10
