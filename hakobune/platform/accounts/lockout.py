"""What a person locked out by too many failed logins is told (django-axes calls
these, see AXES_* in settings.py): in the portal, the login page with a
sentence; in the API, its JSON error. Both say when to try again."""

import math
from datetime import datetime

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import ngettext

API_PREFIX = "/api/"


def client_ip(request) -> str | None:
    """The client's address: the connection's, or, behind PORTAL_PROXY_COUNT
    proxies, the one the farthest of them saw. Entries a client wrote itself
    into X-Forwarded-For are never used."""
    remote = request.META.get("REMOTE_ADDR")
    count = settings.PORTAL_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    # Each proxy appends the address it was reached from: the last `count`
    # entries are written by the proxies, the first of those is the client's.
    if len(forwarded) < count:
        return remote
    return forwarded[-count]


def unlocks_at(request, credentials=None) -> datetime:
    """When the lockout ends: the cool-off after the last failure counted."""
    now = timezone.now()
    cool_off = get_cool_off(request)
    handler = AxesProxyHandler.get_implementation()
    latest = None
    if hasattr(handler, "get_user_attempts"):
        for attempts in handler.get_user_attempts(request, credentials):
            last = attempts.order_by("-attempt_time").values_list("attempt_time", flat=True).first()
            if last is not None and (latest is None or last > latest):
                latest = last
    return (latest or now) + cool_off


def lockout_message(request, credentials=None) -> tuple[str, int]:
    """The sentence and the seconds until the next try may succeed."""
    seconds = max(1, math.ceil((unlocks_at(request, credentials) - timezone.now()).total_seconds()))
    minutes = math.ceil(seconds / 60)
    message = ngettext(
        "Too many failed logins: logging in is refused for %(minutes)s minute, even with the right password. "
        "Try again in %(minutes)s minute; an administrator can lift the lock sooner.",
        "Too many failed logins: logging in is refused for %(minutes)s minutes, even with the right password. "
        "Try again in %(minutes)s minutes; an administrator can lift the lock sooner.",
        minutes,
    ) % {"minutes": minutes}
    return message, seconds


def lockout_response(request, original_response=None, credentials=None):
    message, seconds = lockout_message(request, credentials)
    if request.path.startswith(API_PREFIX):
        response = JsonResponse({"error": message, "code": "locked_out", "retry_after": seconds}, status=429)
    else:
        from django.contrib.auth.forms import AuthenticationForm

        username = (credentials or {}).get("username") or request.POST.get("username", "")
        form = AuthenticationForm(request, initial={"username": username})
        response = render(
            request, "accounts/login.html", {"form": form, "locked_out": message}, status=429
        )
    response["Retry-After"] = str(seconds)
    return response
