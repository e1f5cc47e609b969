"""Detecting a Python web app and the container recipe it gets."""

import pytest

from hakobune.worker.buildpacks import NoStackDetected, detect
from hakobune.worker.buildpacks.plan import BuildPlan
from tests.conftest import APPS_DIR


def test_a_flask_app_is_detected_with_its_reason():
    detection = detect(APPS_DIR / "flask-hello")
    assert detection.stack == "python"
    assert detection.reason == "found requirements.txt and app.py creating a Flask app named `app`"
    assert "app:app" in detection.plan.start_command
    assert "gunicorn" in detection.plan.install_commands[0]


def test_a_flask_app_in_another_module_and_variable(tmp_path):
    (tmp_path / "requirements.txt").write_text("Flask\ngunicorn==22.0.0\n")
    (tmp_path / "server.py").write_text("from flask import Flask\napi = Flask(__name__)\n")
    detection = detect(tmp_path)
    assert "server:api" in detection.plan.start_command
    # The app pins its own gunicorn; Hakobune does not add another.
    assert "gunicorn==" not in detection.plan.install_commands[0]


def test_nothing_recognisable_lists_what_was_looked_for(tmp_path):
    (tmp_path / "README.md").write_text("hello")
    with pytest.raises(NoStackDetected, match="requirements.txt"):
        detect(tmp_path)


def test_the_dockerfile_installs_dependencies_before_copying_the_code():
    plan = detect(APPS_DIR / "flask-hello").plan
    dockerfile = plan.dockerfile("python:3.12-slim")
    lines = dockerfile.splitlines()
    assert lines[0] == "FROM python:3.12-slim"
    copy_requirements = lines.index("COPY requirements.txt ./")
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN python3 -m venv"))
    copy_code = lines.index("COPY . .")
    assert copy_requirements < install < copy_code
    assert "USER 10001:10001" in lines
    cmd = next(i for i, line in enumerate(lines) if line.startswith("CMD "))
    assert lines[cmd].startswith('CMD ["/bin/sh", "-c", "exec gunicorn')
    # How the app starts comes before the code, so a code-only change does not redo it.
    assert cmd < copy_code and lines[-1] == "COPY . ."


def test_the_ca_bundle_goes_in_before_the_install_when_configured():
    plan = detect(APPS_DIR / "flask-hello").plan
    lines = plan.dockerfile("base", with_ca_bundle=True).splitlines()
    ca = lines.index("COPY .hakobune/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt")
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN "))
    assert ca < install
    assert any("PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in line for line in lines)


def test_a_plan_survives_being_stored_as_json():
    plan = detect(APPS_DIR / "flask-hello").plan
    assert BuildPlan.from_dict(plan.to_dict()) == plan


def test_a_plan_stored_by_an_older_version_is_still_readable():
    old = {
        "stack": "python",
        "start_command": "gunicorn app:app",
        "port": 8080,
        "stack_version": "",
        "dependency_files": ["requirements.txt"],
        "install_commands": ["pip install -r requirements.txt"],
        "build_commands": [],
        "env": {"A": "1"},
    }
    plan = BuildPlan.from_dict(old)
    assert plan.dependency_files == ("requirements.txt",) and plan.build_stack == "" and plan.artifacts == ()
    assert BuildPlan.from_dict({**old, "a_key_from_the_future": 1}) == plan


def test_every_fixture_plan_survives_json():
    import json

    for app in ("django-static", "python-uv", "node-pnpm", "vite-static", "go-http", "dockerfile", "procfile-custom"):
        plan = detect(APPS_DIR / app).plan
        assert BuildPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan, app


def test_a_two_stage_dockerfile_copies_only_the_artifacts_into_the_run_image():
    plan = detect(APPS_DIR / "vite-static").plan
    lines = plan.dockerfile("hakobune/stack-static:bookworm", build_image="hakobune/stack-node:bookworm",
                            with_ca_bundle=True).splitlines()
    assert lines[0] == "FROM hakobune/stack-node:bookworm AS build"
    copy_deps = lines.index("COPY package.json package-lock.json ./")
    install = lines.index("RUN NODE_ENV=development npm ci --no-audit --no-fund")
    copy_code = lines.index("COPY . .")
    build = lines.index("RUN npm run build")
    run_stage = lines.index("FROM hakobune/stack-static:bookworm")
    copy_artifact = lines.index("COPY --from=build /app/dist /app/dist")
    assert copy_deps < install < copy_code < build < run_stage < copy_artifact
    # The CA bundle reaches npm in the build stage.
    assert any("NODE_EXTRA_CA_CERTS=" in line for line in lines[:run_stage])
    assert any(line.startswith("ENV PORT=8080") and "SITE_ROOT=/app/dist" in line for line in lines[run_stage:])
    assert 'CMD ["/bin/sh", "-c", "exec lighttpd -D -f /etc/lighttpd/hakobune.conf"]' in lines[run_stage:]
    assert lines[-1] == "COPY --from=build /app/dist /app/dist"


def test_a_two_stage_plan_needs_both_images():
    with pytest.raises(ValueError, match="build_image"):
        detect(APPS_DIR / "go-http").plan.dockerfile("static")


def test_a_start_command_list_is_left_to_the_shell():
    plan = BuildPlan(stack="python", start_command="cd web && gunicorn app:app")
    assert 'CMD ["/bin/sh", "-c", "cd web && gunicorn app:app"]' in plan.dockerfile("x").splitlines()


def test_build_commands_run_as_root_and_the_app_as_the_app_user():
    lines = detect(APPS_DIR / "django-static").plan.dockerfile("x").splitlines()
    collect = next(i for i, line in enumerate(lines) if "collectstatic" in line)
    assert lines.index("USER 10001:10001") > collect


@pytest.mark.parametrize("app", ["flask-hello", "node-express", "go-http", "django-static"])
def test_the_dependency_layer_comes_before_the_code(app):
    plan = detect(APPS_DIR / app).plan
    lines = plan.dockerfile("run", build_image="build").splitlines()
    copy_deps = next(i for i, line in enumerate(lines) if line.startswith("COPY ") and line.endswith(" ./"))
    installs = [i for i, line in enumerate(lines) if line in {f"RUN {c}" for c in plan.install_commands}]
    assert copy_deps < min(installs) and max(installs) < lines.index("COPY . .")
