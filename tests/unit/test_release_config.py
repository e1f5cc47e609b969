"""A service's settings are declared once (hakobune/runtime/release_config.py):
the portal's settings form, the API and its schema, the stored release and
the DeploySpec a runtime gets all come from that declaration, so a setting
declared there (here: for the time of a test) is everywhere at once."""

import json

import pytest
from django.urls import reverse

from hakobune.platform.services.declared_settings import values_of
from hakobune.platform.services.models import Service
from hakobune.platform.services.releases import deploy_spec
from hakobune.runtime.base import DeploySpec
from hakobune.runtime.release_config import (
    ReleaseConfig,
    Setting,
    SettingError,
    all_settings,
    declared,
    get_setting,
)
from hakobune.worker import tasks
from tests.unit.test_api import SVC, bearer
from tests.unit.test_api import service  # noqa: F401


# -- the declaration and the value type ----------------------------------------------------


def test_a_release_written_before_a_setting_existed_takes_the_services_value_or_the_default():
    stored = {"port": 9000, "cpu": 1.0, "memory_mb": 512, "instances": 2, "health_check_path": "/"}
    config = ReleaseConfig.from_dict(stored, defaults={"public": False, "concurrency": 40})
    assert (config.port, config.cpu, config.memory_mb, config.instances) == (9000, 1.0, 512, 2)
    assert (config.public, config.concurrency) == (False, 40)  # the service's
    assert (config.min_instances, config.request_timeout, config.ingress) == (None, None, "")  # declared
    assert config.to_dict() == {**stored, "public": False, "concurrency": 40, "min_instances": None,
                                "max_instances": None, "request_timeout": None, "ingress": ""}


def test_sizes_are_kept_per_process_type():
    config = ReleaseConfig.from_dict({"cpu": 0.5, "memory_mb": 256, "instances": 2,
                                      "processes": {"worker": {"memory_mb": 1024}}})
    assert dict(config.sizes("web")) == {"cpu": 0.5, "memory_mb": 256, "instances": 2}
    assert dict(config.sizes("worker")) == {"cpu": 0.5, "memory_mb": 1024, "instances": 2}  # the rest: web's
    assert config.to_dict()["processes"] == {"worker": {"cpu": 0.5, "memory_mb": 1024, "instances": 2}}
    assert ReleaseConfig.from_dict(config.to_dict()) == config
    # Stored under processes, the web process's sizes are read too.
    assert ReleaseConfig.from_dict({"processes": {"web": {"instances": 4}}}).instances == 4


def test_a_value_out_of_bounds_is_refused_naming_the_setting_and_its_bounds():
    with pytest.raises(SettingError) as refused:
        ReleaseConfig.of(concurrency=5000)
    assert refused.value.setting == "concurrency"
    assert refused.value.message == ("Requests per instance (concurrency) takes a whole number from 1 to 1000, "
                                     "or nothing for the runtime's default; 5000 is not.")
    with pytest.raises(SettingError, match=r"CPU \(cores\) \(cpu\) takes a number from 0.1 to 8 with at most 2 "):
        ReleaseConfig.of(cpu=0.125)
    with pytest.raises(SettingError, match="ingress.*one of '' \\(empty\\), 'all', 'internal'"):
        ReleaseConfig.of(ingress="everywhere")
    with pytest.raises(SettingError, match="A path on your app, starting with /"):
        ReleaseConfig.of(health_check_path="healthz")
    with pytest.raises(SettingError, match="The fewest instances cannot be more than the most"):
        ReleaseConfig.of(min_instances=5, max_instances=2).validate()
    assert ReleaseConfig.of(cpu="1.5", concurrency=None).cpu == 1.5


def test_a_deploy_spec_reads_its_settings_from_its_config():
    spec = DeploySpec(team="acme", service="hello", release_id=1, release_number=1, image="img", hostname="h",
                      config=ReleaseConfig.of(port=9000, concurrency=20))
    assert (spec.port, spec.concurrency, spec.cpu, spec.public) == (9000, 20, 0.5, True)
    with pytest.raises(AttributeError):
        spec.no_such_setting  # noqa: B018


def test_the_settings_are_declared_once_with_their_capability_and_sizes():
    autoscaling = {s.name for s in all_settings() if s.capability == "autoscaling"}
    assert autoscaling == {"min_instances", "max_instances", "concurrency", "request_timeout", "ingress"}
    assert {s.name for s in all_settings() if s.per_process} == {"cpu", "memory_mb", "instances"}
    assert {s.name for s in all_settings(stage="build")} == {"start_command", "build_command", "cloud_builder"}
    assert get_setting("public").capability is None


# -- a setting declared for this test, found everywhere ------------------------------------


@pytest.fixture
def drain_seconds():
    """A setting without a column on the service, declared for the test."""
    setting = Setting(
        "drain_seconds", int, "Drain time (seconds)", "How long an instance finishes its requests before it stops.",
        default=10, min=1, max=600,
    )
    with declared(setting):
        yield setting
    assert "drain_seconds" not in {s.name for s in all_settings()}


def settings_post(service, **changes):
    """The settings form as the page fills it in, with these changes."""
    data = {name: value for name, value in values_of(service).items() if value is not None}
    data = {name: ("on" if value is True else value) for name, value in data.items() if value is not False}
    return {**data, **changes}


def test_a_declared_setting_is_in_the_portals_form_with_its_bounds(login, owner, service, drain_seconds, dummy_backend,
                                                                  queued_tasks):
    client = login(owner)
    page = client.get(reverse("services:detail", args=["acme", "hello"])).content.decode()
    assert 'name="drain_seconds"' in page and 'min="1"' in page and 'max="600"' in page
    assert "Drain time (seconds)" in page and "finishes its requests before it stops" in page

    url = reverse("services:settings", args=["acme", "hello"])
    refused = client.post(url, settings_post(service, drain_seconds="601"), follow=True).content.decode()
    assert "Drain time (seconds): Give a whole number from 1 to 600." in refused
    service.refresh_from_db()
    assert service.extra_settings == {} and service.drain_seconds == 10  # the declared default

    saved = client.post(url, settings_post(service, drain_seconds="30"), follow=True).content.decode()
    release = service.releases.order_by("-number").first()
    assert f"v{release.number} starts with the new settings" in saved
    service.refresh_from_db()
    assert service.extra_settings == {"drain_seconds": 30} and service.drain_seconds == 30
    assert release.config["drain_seconds"] == 30 and release.description == "Changed drain_seconds"

    tasks.start_release(release.id)
    spec = dummy_backend.calls[-1][1]
    assert spec.release_id == release.id and spec.drain_seconds == 30


def test_a_declared_setting_is_in_the_api_and_its_schema(client, owner, service, drain_seconds, dummy_backend,
                                                         queued_tasks):
    from drf_spectacular.generators import SchemaGenerator

    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert schemas["PatchedServiceUpdateRequest"]["properties"]["drain_seconds"] == {
        "type": "integer", "minimum": 1, "maximum": 600,
        "description": "How long an instance finishes its requests before it stops.",
    }
    assert schemas["ServiceCreateRequest"]["properties"]["drain_seconds"]["maximum"] == 600
    assert schemas["Service"]["properties"]["drain_seconds"] == {"type": "integer"}
    assert "drain_seconds" in schemas["Service"]["required"]

    def patch(body):
        return client.patch(f"{SVC}/", data=json.dumps(body), content_type="application/json", **bearer(owner))

    refused = patch({"drain_seconds": 601})
    assert refused.status_code == 400
    assert "600" in " ".join(refused.json()["fields"]["drain_seconds"])
    assert Service.objects.get(id=service.id).extra_settings == {}

    changed = patch({"drain_seconds": 45})
    assert changed.status_code == 200, changed.content
    assert changed.json()["drain_seconds"] == 45
    assert client.get(f"{SVC}/", **bearer(owner)).json()["drain_seconds"] == 45

    release = service.releases.get(number=changed.json()["release"])
    tasks.start_release(release.id)
    assert dummy_backend.calls[-1][1].drain_seconds == 45


def test_a_release_made_before_the_setting_was_declared_gets_the_services_value(service, drain_seconds):
    Service.objects.filter(id=service.id).update(extra_settings={"drain_seconds": 120})
    service.refresh_from_db()
    assert "drain_seconds" not in service.live_release.config
    assert deploy_spec(service, service.live_release).drain_seconds == 120


def test_a_service_is_created_with_a_declared_setting_through_the_api(client, owner, team, drain_seconds,
                                                                     dummy_backend):
    created = client.post("/api/v1/teams/acme/services/", data=json.dumps({"name": "api", "drain_seconds": 5}),
                          content_type="application/json", **bearer(owner))
    assert created.status_code == 201, created.content
    assert created.json()["drain_seconds"] == 5
    assert Service.objects.get(name="api").extra_settings == {"drain_seconds": 5}
