"""The router's configuration through the real Caddy: a service whose route
is invalid (a custom domain that slipped past the forms, or one Caddy itself
refuses) is left out and told on its page, and every other service keeps
answering."""

import pytest
from django.utils import timezone

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.housekeeping import sync_router
from hakobune.platform.services.models import Domain, Service
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.runtime import router as router_module
from tests.conftest import upload_of
from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def live_service(team, owner, name):
    service = create_service(team=team, name=name, created_by=owner)
    build = wait_for_build(deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner))
    assert build.status == "live", build.failure_reason
    return Service.objects.get(id=service.id)


def test_a_bad_route_is_left_out_and_reported_while_the_others_answer(owner, team_name, worker, router, monkeypatch):
    team = create_team(name=team_name, owner=owner)
    web = live_service(team, owner, "web")
    shop = live_service(team, owner, "shop")

    # A custom domain no form would take, written straight into the table.
    Domain.objects.create(service=shop, hostname="shop .example", kind=Domain.Kind.CUSTOM, verified_at=timezone.now())
    sync_router()

    assert get_through_router(web.hostname).text.startswith("Hello from Hakobune!")
    assert get_through_router(shop.hostname).status_code == 404
    shop.refresh_from_db()
    assert "'shop .example' is not a valid host name" in shop.route_problem
    assert Service.objects.get(id=web.id).route_problem == ""

    # Past Hakobune's own checks, Caddy refuses the whole config for a host named
    # twice in one route (twice in its host map): the route of the entry it
    # names is left out and the rest loaded.
    monkeypatch.setattr(router_module, "screen", lambda routes: (list(routes), {}))
    twice = router_module.Route(shop.hostname, ("127.0.0.1:9",), aliases=("dup.example",), redirects=("dup.example",))
    original = router_module.CaddyRouter.full_config

    def with_a_refused_route(self, routes):
        return original(self, [twice if route.hostname == shop.hostname else route for route in routes])

    monkeypatch.setattr(router_module.CaddyRouter, "full_config", with_a_refused_route)
    sync_router()

    assert get_through_router(web.hostname).text.startswith("Hello from Hakobune!")
    shop.refresh_from_db()
    assert "the router (Caddy) refused its route" in shop.route_problem
    assert "duplicate input" in shop.route_problem

    # Fixed: served again, and nothing to tell.
    monkeypatch.undo()
    Domain.objects.filter(service=shop).exclude(kind=Domain.Kind.PLATFORM).delete()
    sync_router()
    assert get_through_router(shop.hostname).text.startswith("Hello from Hakobune!")
    assert Service.objects.get(id=shop.id).route_problem == ""
