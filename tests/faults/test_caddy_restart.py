"""Fault: the router (Caddy) dies and comes back. Hakobune keeps the last
config Caddy took on disk: a Caddy started from it (as scripts/start.sh
starts it) serves every service at once; one started empty gets every route
back from the database at the next sync, and a deploy to an empty Caddy
brings the others back with it."""

import json

import pytest
import requests
from django.conf import settings

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.housekeeping import sync_router
from hakobune.platform.services.models import Service
from hakobune.platform.services.services import create_service, deploy_service
from tests.conftest import archive_of
from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def deployed(team, owner, name, greeting):
    from django.core.files.uploadedfile import SimpleUploadedFile

    service = Service.objects.filter(team=team, name=name).first() or create_service(
        team=team, name=name, created_by=owner)
    app = (archive_of("flask-hello", extra={"app.py": _app(greeting)}))
    build = deploy_service(service=service, source_file=SimpleUploadedFile("app.tar.gz", app), created_by=owner)
    assert wait_for_build(build).status == "live"
    return Service.objects.get(id=service.id)


def _app(greeting):
    from tests.conftest import APPS_DIR

    return (APPS_DIR / "flask-hello" / "app.py").read_text().replace("Hello from Hakobune", greeting)


def answers(service) -> str:
    try:
        return get_through_router(service.hostname).text
    except requests.RequestException as exc:
        return repr(exc)


def test_after_a_caddy_restart_the_routes_come_back(owner, team_name, worker, caddy, tmp_path):
    team = create_team(name=team_name, owner=owner)
    web = deployed(team, owner, "web", "Web here")
    api = deployed(team, owner, "api", "Api here")
    last_good = settings.ROUTER_STATE_DIR / "last-good.json"
    assert web.hostname in last_good.read_text() and api.hostname in last_good.read_text()

    # 1. Killed, started empty: nothing is routed until the sync (the
    #    reconciler's, every 30 s) rebuilds the config from the database.
    caddy.kill()
    caddy.start()
    assert not answers(web).startswith("Web here")
    sync_router()
    assert answers(web).startswith("Web here") and answers(api).startswith("Api here")

    # 2. Killed, started from the last good config as scripts/start.sh does:
    #    every service answers before any sync.
    caddy.kill()
    boot = tmp_path / "from-last-good.json"
    boot.write_text(last_good.read_text())
    caddy.start(boot)
    assert answers(web).startswith("Web here") and answers(api).startswith("Api here")

    # 3. Killed, started empty, and a deploy comes first: the deploy's route
    #    change loads the last good config back before its own route.
    caddy.kill()
    caddy.start()
    web = deployed(team, owner, "web", "Web again")
    assert answers(web).startswith("Web again") and answers(api).startswith("Api here")
    assert json.loads(last_good.read_text())["apps"]["http"]["servers"]["hakobune"]["routes"]
