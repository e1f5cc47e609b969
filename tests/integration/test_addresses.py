"""A service's addresses through the real router: its own
<service>.<team> address answers; its old <service>-<team> address answers
with a permanent redirect to it; a custom domain answers only once it is
verified."""

import pytest
from django.utils import timezone

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.housekeeping import sync_router
from hakobune.platform.services.models import Domain, legacy_hostname
from hakobune.platform.services.services import add_domain, create_service, deploy_service
from tests.conftest import upload_of
from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_old_addresses_redirect_and_custom_domains_answer_once_verified(owner, team_name, worker, router):
    team = create_team(name=team_name, owner=owner)
    service = create_service(team=team, name="hello", created_by=owner)
    build = wait_for_build(deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner))
    assert build.status == "live", build.failure_reason
    assert get_through_router(service.hostname).text.startswith("Hello from Hakobune!")

    old = legacy_hostname("hello", team_name)
    Domain.objects.create(service=service, hostname=old, kind=Domain.Kind.LEGACY)
    add_domain(service=service, hostname="www.hello-test.example")
    sync_router()

    moved = get_through_router(old, "/some/page?x=1")
    assert moved.status_code == 308
    assert moved.headers["Location"] == f"http://{service.hostname}:{router_port()}/some/page?x=1"
    # Not verified: the router does not know the domain.
    assert get_through_router("www.hello-test.example").status_code == 404

    Domain.objects.filter(hostname="www.hello-test.example").update(verified_at=timezone.now())
    sync_router()
    assert get_through_router("www.hello-test.example").text.startswith("Hello from Hakobune!")


def router_port():
    from django.conf import settings

    return settings.ROUTER_PORT
