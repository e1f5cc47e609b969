"""Every fixture app under tests/fixtures/apps and what it is detected as.
A new detector (or a change to one) must not change what an existing app is
detected as; a new fixture app must be listed here."""

import pytest

from hakobune.worker.buildpacks import DetectionError, NoStackDetected, detect
from tests.conftest import APPS_DIR

# app -> (stack, build stack), or the error detection raises.
EXPECTED = {
    "addon-client": ("python", ""),
    "build-out-of-memory": ("dockerfile", ""),  # a build step past the build's memory
    "chatty": ("python", ""),
    "django-celery": ("python", ""),
    "django-static": ("python", ""),
    "django-tutorial": ("python", ""),  # keeps its data in db.sqlite3: fails where files are read-only
    "dockerfile": ("dockerfile", ""),
    "exits-at-start": ("python", ""),
    "fastapi": ("python", ""),
    "flask-broken": ("python", ""),
    "flask-hello": ("python", ""),
    "go-godir": ("go", "go"),
    "go-buildable": ("go", "go"),
    "go-gopath": ("go", "go"),
    "go-http": ("go", "go"),
    "google-python": ("python", ""),
    "health-check-fails": ("python", ""),
    "java-maven": ("java", ""),
    "java-maven-central": ("java", ""),
    "java-maven-modules": ("java", ""),  # GOOGLE_BUILDABLE names its web module  # fails at its build here: Maven Central is not reachable
    "java-plain": ("java", ""),
    "listens-on-localhost": ("python", ""),
    "listens-on-other-port": ("python", ""),
    "module-missing": ("python", ""),
    "monorepo": NoStackDetected,
    "no-app": NoStackDetected,
    "node-express": ("node", ""),
    "node-no-package": ("node", ""),
    "node-no-start": ("node", ""),
    "node-pnpm": ("node", ""),
    "out-of-memory": ("python", ""),
    "probe": ("python", ""),
    "procfile-custom": ("python", ""),
    "procfile-empty": DetectionError,
    "procfile-without-web": ("python", ""),  # workers only: live, not routed
    "python-npm-assets": ("python-node", ""),
    "python-poetry": ("python", ""),
    "python-stdlib-main": ("python", ""),
    "python-stdlib-procfile": ("python", ""),
    "volume-notes": ("python", ""),
    "python-uv": ("python", ""),
    "php-hello": ("php", ""),
    "php-next-release": ("php", ""),  # asks for PHP 8.4: the trixie variant where there is one
    "php-packages-unreachable": ("php", ""),
    "php-plain": ("php", ""),
    "ruby-gem-not-in-stack": ("ruby", ""),  # fails at its install: the stack's Sinatra is not 9
    "ruby-gems-unreachable": ("ruby", ""),
    "ruby-next-release": ("ruby", ""),  # asks for Ruby 3.3: the trixie variant where there is one
    "ruby-rack": ("ruby", ""),
    "ruby-rails": ("ruby", ""),
    "ruby-sinatra": ("ruby", ""),
    "ruby-webrick-procfile": ("ruby", ""),
    "static-site": ("static", ""),
    "vite-static": ("static", "node"),
}


def test_every_fixture_app_is_listed():
    apps = {path.name for path in APPS_DIR.iterdir() if path.is_dir()}
    assert apps == set(EXPECTED), "list the new fixture app (or remove the gone one) in EXPECTED"


@pytest.mark.parametrize("app", sorted(EXPECTED))
def test_a_fixture_app_keeps_its_detected_stack(app):
    expected = EXPECTED[app]
    if isinstance(expected, type):
        with pytest.raises(expected):
            detect(APPS_DIR / app)
        return
    detection = detect(APPS_DIR / app)
    assert (detection.stack, detection.plan.build_stack) == expected, detection.reason
