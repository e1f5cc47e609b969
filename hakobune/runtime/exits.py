"""Telling, from the Docker Engine's events, an instance that exited by
itself (its app crashed, or the kernel's OOM killer ended it) from one that
Hakobune stopped. No Django here: the platform's log collector, which
follows the engine's events anyway, hands each exit to the platform
(observability/events.record_instance_exit).

Why the events and not a look at the containers: an instance that exits is
started again by the engine at once (its restart policy, with a pause that
starts at 0.1 s), and the new start clears the exit code the container showed,
so a periodic look (the reconciler's, every 30 s) sees most crashes never,
and their exit codes not at all. The engine says `die` with the exit code for
every exit, `oom` just before the die of an OOM kill, and `kill` before the
die of every stop it was asked for (a stop, a removal, a sleep, a retired
release): a die with no kill shortly before it is the app's own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from .docker_local import LABEL_ONEOFF, LABEL_PROCESS, LABEL_RELEASE, LABEL_SERVICE, LABEL_TEAM
from .release_config import WEB

# The container events the watch reads.
EVENTS = ("start", "die", "oom", "kill")
# A die this long after a kill of its container was asked for: the stop's
# grace period (10 s by default) and a margin.
KILL_WINDOW_NS = 60 * 1_000_000_000
# An OOM kill of the instance's main process is said just before its die; an
# `oom` with no die soon after ended another of its processes, not the instance.
OOM_WINDOW_NS = 10 * 1_000_000_000


@dataclass(frozen=True)
class InstanceExit:
    """An instance that exited without being asked to."""

    container_id: str
    instance: str  # the container's name
    team: str
    service: str
    release_id: str
    process: str
    exit_code: int | None
    oom_killed: bool
    at_ns: int  # the engine's time of the exit

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.at_ns / 1_000_000_000, tz=timezone.utc)


class ExitWatch:
    """Reads the engine's container events one by one (`see`) and says which
    were exits of the app."""

    def __init__(self, kill_window_ns: int = KILL_WINDOW_NS):
        self.kill_window_ns = kill_window_ns
        self.killed: dict[str, int] = {}
        self.oom: dict[str, int] = {}

    def see(self, event: dict) -> InstanceExit | None:
        action = event.get("Action") or event.get("status") or ""
        container_id = event.get("id") or (event.get("Actor") or {}).get("ID") or ""
        at_ns = int(event.get("timeNano") or int(event.get("time") or 0) * 1_000_000_000)
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        self._forget_before(at_ns - self.kill_window_ns)
        if action == "kill":
            self.killed[container_id] = at_ns
        elif action == "oom":
            self.oom[container_id] = at_ns
        elif action == "start":
            self.oom.pop(container_id, None)
        if action != "die" or not attributes.get(LABEL_SERVICE) or LABEL_ONEOFF in attributes:
            return None
        asked = self.killed.pop(container_id, None) is not None
        oom_at = self.oom.pop(container_id, None)
        oom_killed = oom_at is not None and at_ns - oom_at <= OOM_WINDOW_NS
        if asked and not oom_killed:
            return None
        code = attributes.get("exitCode", "")
        return InstanceExit(
            container_id=container_id, instance=attributes.get("name", container_id[:12]),
            team=attributes.get(LABEL_TEAM, ""), service=attributes.get(LABEL_SERVICE, ""),
            release_id=attributes.get(LABEL_RELEASE, ""), process=attributes.get(LABEL_PROCESS) or WEB,
            exit_code=int(code) if code.lstrip("-").isdigit() else None, oom_killed=oom_killed, at_ns=at_ns,
        )

    def _forget_before(self, ns: int) -> None:
        for seen in (self.killed, self.oom):
            for container_id in [key for key, at in seen.items() if at < ns]:
                del seen[container_id]


def container_events(client, labels: list[str], since_ns: int | None = None):
    """The engine's events stream of containers with these labels starting,
    exiting, killed or OOM-killed; from `since_ns` on (the engine keeps its
    last 256 events), else from now. Close the returned stream (.close()) to
    end it."""
    since = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}" if since_ns else None
    return client.events(decode=True, since=since,
                         filters={"type": "container", "event": list(EVENTS), "label": labels})
