"""The declared settings (hakobune/runtime/release_config.py) on a Service:
where each is kept (its own column, or the service's `extra_settings` when it
has none) and a service's values."""

from __future__ import annotations

from typing import Any

from hakobune.runtime.release_config import Setting, all_settings, get_setting

from .models import Service


def value_of(service: Service, setting: Setting | str) -> Any:
    setting = get_setting(setting) if isinstance(setting, str) else setting
    if Service.has_column(setting.name):
        return getattr(service, setting.name)
    return setting.coerce((service.extra_settings or {}).get(setting.name))


def values_of(service: Service, *, stage: str | None = None) -> dict[str, Any]:
    """The service's value of every declared setting (of one stage)."""
    return {setting.name: value_of(service, setting) for setting in all_settings(stage=stage)}


def split_by_storage(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Declared settings' values as (those with a column, those kept in
    extra_settings)."""
    columns, extra = {}, {}
    for name, value in values.items():
        (columns if Service.has_column(name) else extra)[name] = value
    return columns, extra
