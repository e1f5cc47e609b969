"""The app shapes beyond the usual ones, each deployed for real as an owner
uploads it (built by a real Celery worker on the real Docker Engine, started
by the local runtime, answered through the tests' Caddy): Python of the
standard library alone, Go from before modules, Node without package.json,
an app built with two languages, Google Cloud's buildpack settings (a Go
package and a Maven module named by GOOGLE_BUILDABLE). An app
asking for a language version no stack here has is refused at detection
with the versions there are.

All deploys go to one team and are queued at once; the tests then read what
each deploy did."""

import secrets
from functools import partial

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from hakobune.worker.builders.local_docker import LocalDockerBuilder
from tests.conftest import archive_of, upload_of
from tests.support.deploys import deploy_all

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# deploy -> {path: what its answer contains}
WORKING = {
    "python-stdlib-procfile": {"/": "hello from python-stdlib-procfile"},
    "python-stdlib-main": {"/": "hello from python-stdlib-main"},
    "go-godir": {"/": "hello from go-godir (vendored greeting)"},
    "go-gopath": {"/": "hello from go-gopath"},
    "node-no-package": {"/": "hello from node-no-package"},
    "node-no-start": {"/": "hello from node-no-start"},
    # .buildpacks: Node.js builds the stylesheet, then Python serves it.
    "python-npm-assets": {"/": "hello from python-npm-assets", "/static/app.css": "/* built by npm from 2 files */"},
    "google-python": {"/": "hello from google-python (started by GOOGLE_ENTRYPOINT)"},
    "google-python-service": {"/": "hello from the service's settings"},
    "go-buildable": {"/": "hello from go-buildable (cmd/web)"},
    # GOOGLE_BUILDABLE names the web module; its admin module, which does not compile, is not built.
    "java-maven-modules": {"/": "hello from java-maven-modules (module greeting), module web, Java 17"},
}
# deploy -> words its failure reason must contain
FAILING = {
    "python-too-new": ["The app asks for Python 3.99 (.python-version), but the stacks here have Python 3.11",
                       "STACK_VARIANTS"],
}
# deploy -> (fixture app, files added to it)
VARIANTS = {
    "python-too-new": ("python-stdlib-main", {".python-version": "3.99\n"}),
    "google-python-service": ("google-python", {}),
}
# deploy -> the service's own variables, set before it is deployed
SERVICE_ENV = {
    "google-python-service": {"GOOGLE_ENTRYPOINT": "python3 serve.py --greeting \"hello from the service's settings\""},
}
BUILD_TIMEOUT = 1200


def _upload(deploy):
    app, extra = VARIANTS.get(deploy, (deploy, None))
    if not extra and app == deploy:
        return upload_of(app)
    data = archive_of(app, extra=extra, folder=deploy)
    return SimpleUploadedFile(f"{deploy}.tar.gz", data, content_type="application/octet-stream")


@pytest.fixture(scope="module")
def outcomes(django_db_blocker, worker, router, docker_client):
    deploys = list(WORKING) + list(FAILING)
    yield from deploy_all(django_db_blocker, docker_client, f"sh{secrets.token_hex(3)}",
                          uploads={deploy: partial(_upload, deploy) for deploy in deploys},
                          paths={deploy: list(WORKING[deploy]) for deploy in WORKING}, service_env=SERVICE_ENV,
                          timeout=BUILD_TIMEOUT)


@pytest.mark.parametrize("deploy", list(WORKING))
def test_an_app_of_this_shape_answers_through_the_router(outcomes, deploy):
    outcome = outcomes[deploy]
    assert outcome.status == "live", f"{outcome.failure_reason}\n{outcome.log[-4000:]}"
    for path, words in WORKING[deploy].items():
        status, body = outcome.responses[path]
        assert status == 200, body[:500]
        assert words in body


@pytest.mark.parametrize("deploy", list(FAILING))
def test_an_app_that_cannot_be_built_here_is_refused_at_detection(outcomes, deploy):
    outcome = outcomes[deploy]
    assert outcome.status == "failed", outcome.log[-2000:]
    assert outcome.failed_step in ("", "detecting"), outcome.failed_step
    for words in FAILING[deploy]:
        assert words in outcome.failure_reason, outcome.failure_reason
    assert not outcome.plan, "nothing was built"


def test_the_app_of_two_languages_was_built_on_the_stack_that_has_both(outcomes):
    outcome = outcomes["python-npm-assets"]
    assert outcome.plan["stack"] == "python-node"
    assert "Python 3." in outcome.plan["stack_version"] and "Node.js 18." in outcome.plan["stack_version"]
    # The npm build ran in the image (the stylesheet it wrote is served, above; a
    # rerun of the suite may reuse the image of the same source and plan).
    assert outcome.plan["build_commands"] == ["npm run build"]
    assert outcome.plan["install_commands"][0].startswith("NODE_ENV=development npm ci")


def test_the_stacks_on_offer_are_read_from_this_hosts_images(docker_client):
    options = dict(settings.IMAGE_BUILDERS["local"]["OPTIONS"])
    builder = LocalDockerBuilder("local", **{**options, "stack_variants": {"python": ["trixie", "python:3.13-slim"]}})
    offers = builder.stack_offers("python")
    default = offers[0]
    assert default.variant == "" and default.version.startswith("3.")
    # The default stack's version is the one its image says.
    image_label = docker_client.images.get(default.name).labels.get("org.hakobune.stack.version", "")
    assert not image_label or default.version in image_label
    assert [(o.variant, o.version) for o in offers[1:]] == [("trixie", "3.13.5"), ("python:3.13-slim", "3.13")]
