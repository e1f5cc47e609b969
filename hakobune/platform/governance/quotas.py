"""Team quotas: how many services a team has, and how much CPU and memory its
services may hold at once, counted alike for every runtime: each backend says
what a service's settings reserve on it (Cloud Run rounds up to whole CPUs)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from django.conf import settings

from hakobune.platform.addons.models import AddOn
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.models import DesiredState
from hakobune.runtime.base import RuntimeBackendError
from hakobune.runtime.release_config import all_settings

from .models import TeamPolicy


class QuotaExceeded(Exception):
    pass


@dataclass(frozen=True)
class Limits:
    services: int
    cpu: float
    memory_mb: int


@dataclass(frozen=True)
class Usage:
    services: int
    cpu: float
    memory_mb: int


def policy_of(team) -> TeamPolicy | None:
    """The team's policy (None: the platform's defaults); read with the team
    when it was selected with `select_related("policy")`, so that a page
    listing teams asks once, not once per team."""
    if "policy" in team._state.fields_cache:
        return team._state.fields_cache["policy"]
    return TeamPolicy.objects.filter(team=team).first()


def limits_of(team) -> Limits:
    policy = policy_of(team)

    def pick(field, default):
        value = getattr(policy, field, None) if policy else None
        return default if value is None else value

    return Limits(
        services=int(pick("max_services", settings.TEAM_MAX_SERVICES)),
        cpu=float(pick("max_cpu", settings.TEAM_MAX_CPU)),
        memory_mb=int(pick("max_memory_mb", settings.TEAM_MAX_MEMORY_MB)),
    )


def reservation(service) -> tuple[float, int]:
    """What the service's current settings hold at most on its runtime: its
    web instances (when it has a web process) and those of its other process
    types (`service.processes`, each size not given being web's)."""
    values = {setting.name: setting.coerce(getattr(service, setting.name)) for setting in all_settings() if setting.quota}
    try:
        backend = backend_for(service)
    except RuntimeBackendError:
        backend = None

    def reserved(**sizes) -> tuple[float, int]:
        if backend is None:
            return sizes["cpu"] * sizes["instances"], sizes["memory_mb"] * sizes["instances"]
        return backend.reserved(**sizes)

    cpu, memory = reserved(**values) if getattr(service, "serves_web", True) else (0.0, 0)
    for sizes in (getattr(service, "processes", None) or {}).values():
        count = int(sizes.get("instances", 1))
        if count <= 0:
            continue
        more_cpu, more_memory = reserved(
            cpu=float(sizes.get("cpu", values["cpu"])), memory_mb=int(sizes.get("memory_mb", values["memory_mb"])),
            instances=count,
        )
        cpu, memory = cpu + more_cpu, memory + more_memory
    return cpu, memory


def addon_sizes_of(teams) -> dict[int, list[tuple[float, int]]]:
    """The (cpu, memory_mb) of every add-on of these teams, by team id, in one query."""
    sizes: dict[int, list[tuple[float, int]]] = {team.id: [] for team in teams}
    for team_id, cpu, memory in AddOn.objects.filter(team__in=teams).values_list("team_id", "cpu", "memory_mb"):
        sizes[team_id].append((float(cpu), memory))
    return sizes


def usage_of(team, services=None, addons=None) -> Usage:
    """What the team's services and add-ons hold; `services`: its services
    not deleted, and `addons`: its add-ons' sizes (addon_sizes_of), when the
    caller has them already (a page listing many teams)."""
    if services is None:
        services = list(team.services.exclude(desired_state=DesiredState.DELETED))
    if addons is None:
        addons = addon_sizes_of([team])[team.id]
    held = [reservation(service) for service in services]
    # Add-ons hold their size for as long as they exist.
    held += list(addons)
    return Usage(len(services), round(sum(c for c, _ in held), 2), sum(m for _, m in held))


def check_quota(service, *, creating: bool = False, **changes) -> None:
    """Raises QuotaExceeded, in words, when creating `service` or giving it
    `changes` (cpu, memory_mb, instances, min/max_instances) would take its
    team over a limit. A change that holds no more than before always passes,
    so lowering a quota never stops a team from shrinking."""
    team = service.team
    limits, now = limits_of(team), usage_of(team)
    before = (0.0, 0) if creating else reservation(service)
    changed = copy.copy(service)
    for name, value in changes.items():
        setattr(changed, name, value)
    after = reservation(changed)
    problems = []
    if creating and now.services + 1 > limits.services:
        problems.append(f"at most {limits.services} service{'s' if limits.services != 1 else ''} (it has {now.services})")
    cpu = round(now.cpu - before[0] + after[0], 2)
    if after[0] > before[0] and cpu > limits.cpu + 1e-9:
        problems.append(f"{limits.cpu:g} CPU cores at once (its services would hold {cpu:g}; now {now.cpu:g})")
    memory = now.memory_mb - before[1] + after[1]
    if after[1] > before[1] and memory > limits.memory_mb:
        problems.append(f"{limits.memory_mb} MiB of memory at once (its services would hold {memory}; now {now.memory_mb})")
    if problems:
        raise QuotaExceeded(
            f"Team {team.name} may have {' and '.join(problems)}. Use fewer instances, less CPU or memory, or "
            "delete a service you no longer need; an administrator can raise the team's quota."
        )
