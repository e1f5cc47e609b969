"""Resolves a service's target to its configured runtime backend, the way Django
resolves email backends: settings.RUNTIME_BACKENDS = {alias: {BACKEND, OPTIONS}}.
A backend class with `layered_settings` (Cloud Run) also takes the staff's
settings in the portal, per team, over its OPTIONS."""

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from hakobune.runtime.base import RuntimeBackend, RuntimeBackendError

# (alias, stamp of the staff's settings it was made with) -> backend; teams
# without settings of their own share the platform's.
_backends: dict[tuple, RuntimeBackend] = {}


def get_backend(alias: str, team=None) -> RuntimeBackend:
    """The backend of a target; for `team`, with that team's settings."""
    try:
        config = settings.RUNTIME_BACKENDS[alias]
    except KeyError:
        known = ", ".join(sorted(settings.RUNTIME_BACKENDS))
        raise RuntimeBackendError(f"There is no runtime target called {alias!r}; this platform has: {known}.")
    backend_class = import_string(config["BACKEND"])
    options, stamp = config.get("OPTIONS", {}), ()
    if getattr(backend_class, "layered_settings", False):
        from .cloud_settings import layered_options

        options, stamp = layered_options(options, team)
    key = (alias, stamp)
    if key not in _backends:
        _backends[key] = backend_class(alias, **options)
    return _backends[key]


def backend_for(service) -> RuntimeBackend:
    """The backend that runs `service`, with its team's settings."""
    return get_backend(service.target, team=service.team)


def can(service, capability: str) -> bool:
    """Whether the service's backend has this capability flag (no, when its
    target is not configured)."""
    try:
        return capability in backend_for(service).capabilities
    except RuntimeBackendError:
        return False


def all_backends() -> list[RuntimeBackend]:
    return [get_backend(alias) for alias in settings.RUNTIME_BACKENDS]


def _forget_backends(*, setting, **kwargs):
    if setting == "RUNTIME_BACKENDS":
        _backends.clear()


setting_changed.connect(_forget_backends)
