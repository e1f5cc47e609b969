"""The pipeline survives its faults (issue: a crash-safe pipeline), on this
host's real Docker Engine with a Hakobune of each test's own
(tests/faults/conftest.py): a worker killed with kill -9 mid-build, a
Redis restarted (empty) mid-deploy, and a simulated host restart. Each ends
with the service answering, the build in a final state, no lock held and
nothing left behind."""

import secrets
import time

import pytest

from hakobune.platform.builds.models import Build
from hakobune.platform.services.models import Release
from hakobune.runtime.docker_local import LABEL_RELEASE
from tests.faults.checks import answers, assert_clean_end, log_of, wait_for_final, wait_until
from tests.support.host import flush_firewall_chains, may_restart_dockerd, restart_dockerd

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.django_db(transaction=True)]

# The app greets with this, so a test tells its versions apart.
GREETING = 'GREETING = "Hello from Hakobune"'
# Slow enough to be caught in the middle: the build's own step sleeps.
SLOW_BUILD_SECONDS = 20


def app_saying(text: str, *, boot_seconds: int = 0) -> dict:
    from tests.conftest import APPS_DIR

    source = (APPS_DIR / "flask-hello" / "app.py").read_text().replace(GREETING, f'GREETING = "{text}"')
    if boot_seconds:
        source = f"import time\ntime.sleep({boot_seconds})\n" + source
    return {"app.py": source}


def slow_build_command(marker: str) -> str:
    return f"echo {marker} && sleep {SLOW_BUILD_SECONDS}"


def in_its_slow_step(build, marker: str) -> bool:
    current = Build.objects.get(id=build.id)
    return current.status == "building" and marker in log_of(build)


def starting(docker_client, build) -> bool:
    """Whether the build's release has an instance booting (its log says so
    only when the deploy ends: lines are written in batches)."""
    release = Release.objects.filter(build_id=build.id, status=Release.Status.DEPLOYING).first()
    return release is not None and bool(
        docker_client.containers.list(filters={"label": f"{LABEL_RELEASE}={release.id}"})
    )


def test_a_worker_killed_mid_build_is_resumed_and_the_build_goes_live(platform, deployer, docker_client):
    marker = f"slow-build-{secrets.token_hex(4)}"
    build = deployer("web", files=app_saying("Survived a kill"), build_command=slow_build_command(marker))
    wait_until(lambda: in_its_slow_step(build, marker), 300, "the build did not reach its slow step", build=build)
    time.sleep(2)

    platform.kill("worker")  # kill -9 of the worker and its pool processes
    platform.start_worker()
    restarted = time.monotonic()

    wait_until(lambda: "The worker running the build step stopped" in log_of(build), 60,
               "the build step was not resumed within a minute of the worker restarting", build=build)
    resumed_after = time.monotonic() - restarted
    build = wait_for_final(build, 240)
    live_after = time.monotonic() - restarted

    assert build.status == "live", f"{build.failure_reason}\n{log_of(build)}"
    print(f"resumed {resumed_after:.0f} s and live {live_after:.0f} s after the worker restarted")
    assert_clean_end(platform, docker_client, build, service=build.service, answer="Survived a kill")


def test_a_redis_restart_during_a_deploy_does_not_stop_it(platform, deployer, docker_client):
    first = wait_for_final(deployer("web", files=app_saying("First")), 300)
    assert first.status == "live", first.failure_reason
    # The second version takes a while to boot: the deploy waits for it.
    second = deployer("web", files=app_saying("Second", boot_seconds=12))
    wait_until(lambda: starting(docker_client, second), 300, "the second deploy did not start its release",
               build=second)

    platform.kill("redis")  # it keeps nothing on disk: it comes back empty
    time.sleep(3)
    platform.start_redis()

    second = wait_for_final(second, 180)
    assert second.status == "live", f"{second.failure_reason}\n{log_of(second)}"
    assert_clean_end(platform, docker_client, second, service=second.service, answer="Second")
    # The platform still takes work through the new Redis.
    third = wait_for_final(deployer("web", files=app_saying("Third")), 300)
    assert third.status == "live", third.failure_reason
    assert_clean_end(platform, docker_client, third, service=third.service, answer="Third")


def test_after_a_host_restart_the_service_answers_and_the_build_ends(platform, deployer, docker_client):
    first = wait_for_final(deployer("web", files=app_saying("Before the restart")), 300)
    assert first.status == "live", first.failure_reason
    marker = f"slow-build-{secrets.token_hex(4)}"
    second = deployer("web", files=app_saying("After the restart"), build_command=slow_build_command(marker))
    wait_until(lambda: in_its_slow_step(second, marker), 300, "the build did not reach its slow step",
               build=second)

    # Every process of the platform stops at once; Redis comes back empty.
    platform.stop_all()
    if may_restart_dockerd():
        restart_dockerd()
        flush_firewall_chains()
    platform.start_all()
    started = time.monotonic()

    # The live service answers again (the router is new and empty: the worker
    # writes its routes when it starts), before the build has ended.
    service = second.service
    # (Bounded generously: another Hakobune on this host may hold the host's
    # firewall lock for a while, which the worker's repair of the platform waits for.)
    wait_until(lambda: answers(platform, service, "Before the restart") or answers(platform, service, "After"), 120,
               "the live service did not answer after the restart", build=second)
    answered_after = time.monotonic() - started
    second = wait_for_final(second, 300)
    assert second.status == "live", f"{second.failure_reason}\n{log_of(second)}"
    print(f"answered {answered_after:.0f} s and the build was live {time.monotonic() - started:.0f} s after the "
          "platform started again")
    assert_clean_end(platform, docker_client, second, service=service, answer="After the restart")
