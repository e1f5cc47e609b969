"""Every error the API gives is JSON: {"error": a sentence a person can act
on, "code": a stable word, "fields": {field: [problems]} for invalid input}."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from hakobune.platform.accounts.networks import NoRoomForTeamNetwork
from hakobune.platform.accounts.services import MembershipError, TeamLimitReached
from hakobune.platform.accounts.tokens import PasswordChangeRequired
from hakobune.platform.services.services import ServiceActionError
from hakobune.runtime.base import RuntimeBackendError

NOT_FOUND = "Not found: it does not exist, or it belongs to a team you are not in."


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class Refused(exceptions.PermissionDenied):
    """A 403 with its own code, for a refusal that is not about a role."""

    def __init__(self, detail, code):
        super().__init__(detail)
        self.default_code = code


class NotImplementedHere(exceptions.APIException):
    status_code = status.HTTP_501_NOT_IMPLEMENTED
    default_code = "not_implemented"


def _flatten(detail, prefix=""):
    """Field errors as {"field": ["message", …]}."""
    if isinstance(detail, dict):
        out = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten(value, name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix or "non_field_errors": [str(detail)]}


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(NOT_FOUND)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "Your role in this team does not allow this.")
    elif isinstance(exc, (ServiceActionError, MembershipError)):
        exc = exceptions.ValidationError({"non_field_errors": [str(exc)]})
    elif isinstance(exc, NoRoomForTeamNetwork):
        exc = Refused(exc.in_words(), "no_room_for_team_network")
    elif isinstance(exc, RuntimeBackendError):
        exc = Conflict(exc.message)
    elif isinstance(exc, TeamLimitReached):
        exc = Refused(str(exc), "team_limit")
    elif isinstance(exc, PasswordChangeRequired):
        exc = Refused(str(exc), "password_change_required")

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = getattr(exc, "detail", None)
    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(detail)
        general = fields.pop("non_field_errors", [])
        parts = general + [f"{name}: {' '.join(problems)}" for name, problems in fields.items()]
        body = {"error": " ".join(parts) or "The request is not valid.", "code": "invalid", "fields": fields}
    else:
        message = str(detail) if detail is not None else str(exc)
        if isinstance(exc, exceptions.NotAuthenticated):
            message = (
                "Log in first: send `Authorization: Bearer <token>` (create a token in the portal under API tokens, "
                "or run `hakobune login`)."
            )
        elif isinstance(exc, exceptions.NotFound) and message in ("Not found.", "No Team matches the given query."):
            message = NOT_FOUND
        body = {"error": message, "code": code}
    response.data = body
    return response
