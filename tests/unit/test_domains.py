"""Custom domains: who may add them, which are refused, and what the router
is told (plain HTTP on *.localhost, automatic HTTPS for a real domain)."""

import pytest
from django.urls import reverse

from hakobune.platform.services.models import Domain
from hakobune.platform.services.services import ServiceActionError, add_domain, create_service
from hakobune.runtime.router import CaddyRouter, Route


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="shop", created_by=owner)


def test_a_developer_adds_and_removes_a_domain_and_a_viewer_cannot(login, developer, viewer, outsider, service,
                                                                   queued_tasks):
    url = reverse("services:domains", args=["acme", "shop"])
    assert login(outsider).post(url, {"hostname": "www.shop.example"}).status_code == 404
    assert login(viewer).post(url, {"hostname": "www.shop.example"}).status_code == 403
    login(developer).post(url, {"hostname": "WWW.Shop.Example."})
    assert service.aliases == ("www.shop.example",)
    page = login(developer).get(reverse("services:detail", args=["acme", "shop"])).content.decode()
    assert "www.shop.example" in page
    login(developer).post(url, {"hostname": "www.shop.example", "remove": "1"})
    assert service.aliases == ()


@pytest.mark.parametrize("hostname, told", [
    ("shop-acme.localhost", "one of Hakobune's own addresses"),
    ("localhost", "one of Hakobune's own addresses"),
    ("not a domain", "Give a full domain name"),
    ("-bad.example.com", "Give a full domain name"),
    ("http://x.example.com", "Give a full domain name"),
])
def test_domains_that_are_not_a_teams_own_are_refused(service, queued_tasks, hostname, told):
    with pytest.raises(ServiceActionError, match=told):
        add_domain(service=service, hostname=hostname)
    assert not Domain.objects.exists()


def test_a_domain_serves_one_service_only(service, team, owner, queued_tasks):
    other = create_service(team=team, name="blog", created_by=owner)
    add_domain(service=service, hostname="www.shop.example")
    with pytest.raises(ServiceActionError, match="already used"):
        add_domain(service=other, hostname="www.shop.example")


def test_the_route_matches_every_hostname_and_https_is_automatic_for_real_domains():
    route = Route("shop-acme.apps.example.com", ("127.0.0.1:32768",), aliases=("www.shop.example",))
    plain = CaddyRouter("http://127.0.0.1:2019", 8080).full_config([route])
    server = plain["apps"]["http"]["servers"]["hakobune"]
    assert server["routes"][0]["match"] == [{"host": ["shop-acme.apps.example.com", "www.shop.example"]}]
    assert server["automatic_https"] == {"disable": True} and server["listen"] == [":8080"]

    secure = CaddyRouter("http://127.0.0.1:2019", 80, https=True, https_port=443).full_config([route])
    server = secure["apps"]["http"]["servers"]["hakobune"]
    assert server["listen"] == [":443"] and "disable" not in server["automatic_https"]
    assert secure["apps"]["http"]["http_port"] == 80
