"""Resolves a service's target to its configured runtime backend, the way Django
resolves email backends: settings.RUNTIME_BACKENDS = {alias: {BACKEND, OPTIONS}}."""

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from hakobune.runtime.base import RuntimeBackend, RuntimeBackendError

_backends: dict[str, RuntimeBackend] = {}


def get_backend(alias: str) -> RuntimeBackend:
    if alias not in _backends:
        try:
            config = settings.RUNTIME_BACKENDS[alias]
        except KeyError:
            known = ", ".join(sorted(settings.RUNTIME_BACKENDS))
            raise RuntimeBackendError(f"There is no runtime target called {alias!r}; this platform has: {known}.")
        backend_class = import_string(config["BACKEND"])
        _backends[alias] = backend_class(alias, **config.get("OPTIONS", {}))
    return _backends[alias]


def all_backends() -> list[RuntimeBackend]:
    return [get_backend(alias) for alias in settings.RUNTIME_BACKENDS]


def _forget_backends(*, setting, **kwargs):
    if setting == "RUNTIME_BACKENDS":
        _backends.clear()


setting_changed.connect(_forget_backends)
