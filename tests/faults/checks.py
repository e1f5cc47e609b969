"""What every fault test ends with: the service answering (where one was
live), the build in a final state with a reason, no lock held, nothing left
behind or lost."""

import time
from pathlib import Path

from hakobune.platform.builds.models import Build
from hakobune.platform.services.models import Release, Service
from hakobune.runtime.docker_local import LABEL_RELEASE, LABEL_SERVICE, LABEL_TEAM


def log_of(build) -> str:
    return "\n".join(Build.objects.get(id=build.id).log_lines.values_list("text", flat=True))


def wait_until(check, timeout: float, what: str, *, build=None):
    """Waits until `check()` is true; else fails saying `what` (and the
    `build`'s status and log)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except Exception as exc:  # noqa: BLE001 - not there yet
            last = exc
        time.sleep(0.5)
    about = ""
    if build is not None:
        about = f"\nthe build is {Build.objects.get(id=build.id).status}; its log:\n{log_of(build)}"
    raise AssertionError(f"{what} within {timeout} s (last error: {last}){about}")


def wait_for_final(build, timeout: float) -> Build:
    def final():
        current = Build.objects.get(id=build.id)
        return current if not current.in_progress else None

    try:
        return wait_until(final, timeout, "the build did not end")
    except AssertionError:
        current = Build.objects.get(id=build.id)
        raise AssertionError(f"build still {current.status} after {timeout} s; log:\n{log_of(build)}") from None


def build_leftovers(docker_client, team: str) -> list[str]:
    """Containers and cgroups the team's builds left behind."""
    cgroups = [path.name for path in Path("/sys/fs/cgroup/pids/hakobune-builds").glob(f"{team}-*")]
    containers = [c.id for c in docker_client.containers.list(all=True, ignore_removed=True)
                  if (docker_client.api.inspect_container(c.id)["HostConfig"].get("CgroupParent") or "")
                  .startswith(f"/hakobune-builds/{team}-")]
    return cgroups + containers


def answers(platform, service: Service, text: str) -> bool:
    response = platform.get(service.hostname)
    return response.status_code == 200 and response.text.startswith(text)


def assert_clean_end(platform, docker_client, build: Build, *, service: Service | None = None,
                     answer: str | None = None, timeout: float = 60) -> None:
    """The build is final with a reason (when failed); no deploy lock is held;
    no build container or cgroup of the team stays; a live service answers
    with `answer` and runs exactly its live release's instances."""
    build = Build.objects.get(id=build.id)
    assert not build.in_progress, build.status
    if build.status == "failed":
        assert build.failure_reason and build.failure_rule, "a failed build says why"
    wait_until(lambda: platform.locks_held() == [], 40, "a deploy lock was still held")
    team = build.service.team.name
    wait_until(lambda: build_leftovers(docker_client, team) == [], 30, "a build container or cgroup stayed")
    assert not Release.objects.filter(build__service=build.service, status=Release.Status.DEPLOYING).exists()
    if service is None:
        return
    service.refresh_from_db()
    wait_until(lambda: answers(platform, service, answer), timeout, f"the service did not answer {answer!r}")

    def only_the_live_release_runs():
        service.refresh_from_db()
        containers = docker_client.containers.list(
            all=True, filters={"label": [f"{LABEL_TEAM}={team}", f"{LABEL_SERVICE}={service.name}"]}
        )
        releases = {c.labels.get(LABEL_RELEASE) for c in containers}
        return releases == {str(service.live_release_id)} and len(containers) == service.live_release.config.get(
            "instances", 1)

    wait_until(only_the_live_release_runs, timeout, "instances other than the live release's stayed")
