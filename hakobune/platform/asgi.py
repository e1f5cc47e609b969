"""The portal's ASGI application: Django for HTTP, and the terminal of
`hakobune run` for WebSockets (api/terminal.py)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")
django_application = get_asgi_application()

from hakobune.platform.api.terminal import terminal  # noqa: E402 — needs Django set up


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        return await terminal(scope, receive, send)
    return await django_application(scope, receive, send)
