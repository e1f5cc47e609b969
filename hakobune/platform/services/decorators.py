from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from hakobune.platform.accounts.models import Role
from hakobune.runtime.base import RuntimeBackendError

from .access import service_for
from .services import ServiceActionError


def service_action(need: Role = Role.DEVELOPER, doing: str = "change services", anchor: str = ""):
    """For a form on the service page that does one thing to the service.

    Logged in and POST only; the service is found with service_for (404 for
    outsiders, 403 below `need`) and the view is called as
    view(request, service, **url_kwargs). What it returns is said as a success;
    a ServiceActionError or RuntimeBackendError it raises is said as an error.
    Then back to the service page (at #anchor). A view that has said what it
    had to say returns None; one that answers otherwise returns a response."""

    def decorate(view):
        @login_required
        @require_POST
        @wraps(view)
        def action(request, team, service, **kwargs):
            _, found = service_for(request.user, team, service, need, doing)
            try:
                outcome = view(request, found, **kwargs)
            except ServiceActionError as exc:
                messages.error(request, str(exc))
            except RuntimeBackendError as exc:
                messages.error(request, exc.message)
            else:
                if isinstance(outcome, HttpResponseBase):
                    return outcome
                if outcome:
                    messages.success(request, outcome)
            return redirect(reverse("services:detail", args=[team, found.name]) + (f"#{anchor}" if anchor else ""))

        return action

    return decorate
