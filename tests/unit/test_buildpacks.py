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
    assert lines[-1].startswith('CMD ["/bin/sh", "-c", "exec gunicorn')


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
