"""Many apps deployed at once by one owner, as the integration suites of app
shapes do: one team (with a quota for all of them), every upload queued at
once, then what each deploy did and what it answers through the router."""

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth import get_user_model

from hakobune.platform.accounts.services import create_team
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.services.services import create_service, deploy_service, set_env
from tests.support.infrastructure import get_through_router, remove_team_containers_and_network, wait_for_build


@dataclass
class Outcome:
    status: str
    failure_reason: str
    failed_step: str
    log: str
    plan: dict
    responses: dict  # path -> (status code, body)


def deploy_all(django_db_blocker, docker_client, team_name: str, *, uploads: dict[str, Callable],
               paths: dict[str, list[str]], service_env: dict[str, dict] | None = None, timeout: float = 1200):
    """Deploys `uploads` (deploy -> a function making its upload) to a new
    team, and yields {deploy: Outcome} once every build ended, the live ones
    asked for their `paths`; removes the team's containers afterwards."""
    results: dict[str, Outcome] = {}
    with django_db_blocker.unblock():
        owner = get_user_model().objects.create_user(username=f"owner-{team_name}", password="x")
        team = create_team(name=team_name, owner=owner)
        TeamPolicy.objects.create(team=team, max_services=len(uploads), max_cpu=len(uploads),
                                  max_memory_mb=len(uploads) * 1024)
        builds = {}
        for deploy, upload in uploads.items():
            service = create_service(team=team, name=deploy, created_by=owner)
            if deploy in (service_env or {}):
                set_env(service=service, values=service_env[deploy], unset=[], created_by=owner)
            builds[deploy] = deploy_service(service=service, source_file=upload(), created_by=owner)
        for deploy, build in builds.items():
            build = wait_for_build(build, timeout=timeout)
            responses = {}
            if build.status == "live":
                for path in paths.get(deploy, []):
                    response = get_through_router(build.service.hostname, path)
                    responses[path] = (response.status_code, response.text)
            results[deploy] = Outcome(
                status=build.status,
                failure_reason=build.failure_reason,
                failed_step=getattr(build, "failed_step", ""),
                log="\n".join(build.log_lines.values_list("text", flat=True)),
                plan=build.plan or {},
                responses=responses,
            )
    yield results
    remove_team_containers_and_network(docker_client, team_name)
    with django_db_blocker.unblock():
        get_user_model().objects.filter(username=f"owner-{team_name}").delete()
