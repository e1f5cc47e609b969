"""The API checked against its own OpenAPI schema with schemathesis, in
process through WSGI: generated requests for every operation, as a team
owner, must never get a 500 and every answer must match the schema."""

import pytest
import schemathesis
from schemathesis import checks
from hypothesis import HealthCheck, settings

from hakobune.platform.accounts.tokens import create_api_token
from hakobune.platform.services.models import Service
from hakobune.platform.services.services import create_service, set_env

from .test_api import deployed

MAX_EXAMPLES = 25
# No 500s, and every answer as the schema says: its status, content type,
# headers and body. (Whether a schema-valid request is accepted is not asked:
# a taken name or an unknown user is valid by the schema and still refused.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def _load_schema():
    from hakobune.platform.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/v1/schema/", application)


# Loaded when the module is collected; the schema view needs no database.
schema = _load_schema()


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """As Django's test client does: a request must not close the database
    connection that holds the test's transaction."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(settings, team, owner, developer, dummy_backend, queued_tasks):
    settings.API_STREAM_MAX_SECONDS = 0.2
    settings.API_STREAM_POLL_SECONDS = 0.05
    service = create_service(team=team, name="hello", created_by=owner)
    v1 = deployed(service, owner, "hakobune/acme/hello:one")
    deployed(service, owner, "hakobune/acme/hello:two")
    set_env(service=service, values={"GREETING": "hi"}, unset=[])
    # A route the router left out, so that answers carry a route problem in words.
    Service.objects.filter(id=service.id).update(route_problem="The host name www.example.com is taken.")
    return {"token": create_api_token(user=owner, name="schemathesis")[1], "build": v1.build_id}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_api_matches_its_schema_and_never_fails(case, world):
    # Point most requests at objects that exist, so that they get past the 404.
    params = case.path_parameters or {}
    if "team" in params and not str(params["team"]).startswith("z"):
        params["team"] = "acme"
    if "service" in params and not str(params["service"]).startswith("z"):
        params["service"] = "hello"
    if isinstance(params.get("build_id"), int) and params["build_id"] % 2 == 0:
        params["build_id"] = world["build"]
    case.call_and_validate(headers={"Authorization": f"Bearer {world['token']}"}, checks=CHECKS)


def test_the_schema_describes_a_services_route_problem():
    service = schema.raw_schema["components"]["schemas"]["Service"]
    assert service["properties"]["route_problem"]["type"] == "string"
    assert "route_problem" in service["required"]
    assert "router leaves this service's route out" in service["properties"]["route_problem"]["description"]
