"""Fault: two deploys of one service sent at the same moment, through the
portal's API as two people (or a CI job and a person) would send them. The
later one wins: the earlier ends superseded, nothing of it goes live, the
service answers with the later one's content, no deploy lock is left, and
nothing is left running or half-done."""

import secrets
import threading
import time

import pytest
import requests
from django.conf import settings

from hakobune.platform.accounts.services import create_team
from hakobune.platform.accounts.tokens import create_api_token
from hakobune.platform.builds import pipeline
from hakobune.platform.builds.models import IN_PROGRESS, Build, BuildStatus
from hakobune.platform.locks import deploy_lock, redis_client
from hakobune.platform.services.services import create_service
from hakobune.worker.builders.confinement import BuildCgroup
from tests.conftest import archive_of

from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

S = BuildStatus


def app_saying(greeting: str) -> bytes:
    return archive_of("flask-hello", extra={
        "app.py": "from flask import Flask\napp = Flask(__name__)\n\n\n@app.get('/')\n"
                  f"def index():\n    return {greeting!r} + '\\n'\n\n\n@app.get('/healthz')\n"
                  "def healthz():\n    return {'ok': True}\n",
    })


def test_two_deploys_of_one_service_at_once_the_later_wins(owner, team_name, worker, portal, docker_client):
    team = create_team(name=team_name, owner=owner)
    service = create_service(team=team, name="race", created_by=owner)
    _, token = create_api_token(user=owner, name="fault")
    run = secrets.token_hex(4)
    url = f"{portal.url}/api/v1/teams/{team.name}/services/race/deploys/"
    answers = {}
    start = threading.Barrier(2)

    def send(name):
        session = requests.Session()
        session.trust_env = False
        start.wait()
        answers[name] = session.post(url, headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                     files={"source": (f"{name}.tar.gz", app_saying(f"{name} {run}"))})

    threads = [threading.Thread(target=send, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {answer.status_code for answer in answers.values()} == {202}, {k: a.text for k, a in answers.items()}

    builds = sorted((Build.objects.get(id=answer.json()["id"]) for answer in answers.values()), key=lambda b: b.number)
    earlier, later = (wait_for_build(build) for build in builds)
    assert later.status == S.LIVE, later.failure_reason
    # "At once" is as the portal sees it: the earlier is superseded unless it
    # had reached its deploy step before the later one was accepted (a cached
    # build takes about a second); then it stays until the later is live, and
    # never goes live after it.
    if earlier.status == S.LIVE:
        assert earlier.finished_at <= later.finished_at, (earlier.finished_at, later.finished_at)
    else:
        assert earlier.status == S.SUPERSEDED, (earlier.status, earlier.failure_reason)
    winner = "one" if answers["one"].json()["number"] == later.number else "two"

    service.refresh_from_db()
    assert service.live_release.build_id == later.id
    if earlier.status == S.SUPERSEDED:
        assert not service.releases.filter(build=earlier).exists()
    answer = get_through_router(service.hostname)
    assert answer.status_code == 200 and answer.text == f"{winner} {run}\n"

    # Nothing left: no lock, nothing in progress, no step container or workspace of the earlier one.
    assert not redis_client().exists(deploy_lock(service.id).name)
    assert not Build.objects.filter(service=service, status__in=IN_PROGRESS).exists()
    deadline = time.monotonic() + 20
    while pipeline.workspace_dir(earlier.id).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pipeline.workspace_dir(earlier.id).exists()
    if settings.BUILD_CGROUP_PARENT:
        for cgroup in BuildCgroup.of_build(settings.BUILD_CGROUP_PARENT, team.name, earlier.id):
            assert not [cid for cid in cgroup.container_ids()
                        if docker_client.api.containers(filters={"id": cid, "status": "running"})]
