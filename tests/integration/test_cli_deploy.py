"""`hakobune deploy` for real: the installed command packs a fixture app's
folder, uploads it to a live portal, follows the build that a real worker
runs, and prints the URL, which then answers through the router."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hakobune.platform.accounts.services import create_team
from hakobune.platform.accounts.tokens import create_api_token
from hakobune.platform.services.models import Service
from tests.conftest import APPS_DIR

from tests.support.infrastructure import get_through_router

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HAKOBUNE = Path(sys.executable).parent / "hakobune"


@pytest.fixture
def app_folder(tmp_path):
    folder = tmp_path / "hello"
    shutil.copytree(APPS_DIR / "flask-hello", folder)
    # What must not be uploaded.
    (folder / ".gitignore").write_text("__pycache__/\n*.pyc\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "app.cpython-312.pyc").write_bytes(b"\0" * 10)
    (folder / ".hakobuneignore").write_text("notes.txt\n")
    (folder / "notes.txt").write_text("private notes")
    return folder


def run_cli(args, *, cwd, env, timeout=600):
    return subprocess.run([str(HAKOBUNE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_hakobune_deploy_prints_a_url_that_answers(portal, owner, team_name, worker, app_folder, tmp_path,
                                                   docker_client):
    assert HAKOBUNE.exists(), "the console script is missing: pip install -e . in .venv"
    team = create_team(name=team_name, owner=owner)
    _, token = create_api_token(user=owner, name="ci")
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "HAKOBUNE_URL": portal.url,
        "HAKOBUNE_TOKEN": token,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }

    result = run_cli(["deploy"], cwd=app_folder, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Created the service hello" in output and "Uploaded; deploy #1 started" in output
    url = re.search(r"hello is live \(deploy #1\): (\S+)", result.stdout).group(1)

    service = Service.objects.get(team=team, name="hello")
    assert url == service.url
    build = service.builds.get()
    # The build log was streamed to the terminal.
    assert build.log_lines.exists()
    assert build.log_lines.last().text.strip() in result.stdout

    response = get_through_router(urlsplit(url).hostname)
    assert response.status_code == 200 and response.text.startswith("Hello from Hakobune!")

    # What .gitignore and .hakobuneignore leave out was not uploaded.
    import tarfile

    with tarfile.open(build.source_archive.path) as tar:
        names = tar.getnames()
    assert "hello/app.py" in names
    assert not any("__pycache__" in n or n.endswith("notes.txt") for n in names)

    # And the other commands, against the same portal.
    listed = run_cli(["services"], cwd=app_folder, env=env)
    assert listed.returncode == 0 and re.search(r"hello\s+live\s+v1", listed.stdout), listed.stdout + listed.stderr
    opened = run_cli(["open", "--print"], cwd=app_folder, env=env)
    assert opened.stdout.strip() == url
    env_set = run_cli(["env", "set", "GREETING=hi"], cwd=app_folder, env=env)
    assert env_set.returncode == 0 and "v2 applies it" in env_set.stdout, env_set.stdout + env_set.stderr
    # The new release starts with the variable; wait for it before the team's containers go.
    v2 = service.releases.get(number=2)
    deadline = time.monotonic() + 120
    while v2.status in ("pending", "deploying") and time.monotonic() < deadline:
        time.sleep(0.5)
        v2.refresh_from_db()
    assert v2.status == "live", v2.failure_reason
    container = docker_client.containers.list(filters={"label": f"org.hakobune.release={v2.id}"})[0]
    assert "GREETING=hi" in container.attrs["Config"]["Env"]
    # v1's instance goes once v2 serves.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        others = docker_client.containers.list(all=True, filters={"label": f"org.hakobune.team={team_name}"})
        if all(c.labels.get("org.hakobune.release") == str(v2.id) for c in others):
            break
        time.sleep(0.5)


def test_a_failing_deploy_exits_non_zero_with_the_reason(portal, owner, team_name, worker, tmp_path):
    create_team(name=team_name, owner=owner)
    _, token = create_api_token(user=owner, name="ci")
    folder = tmp_path / "broken"
    shutil.copytree(APPS_DIR / "flask-broken", folder)
    env = {**os.environ, "HAKOBUNE_URL": portal.url, "HAKOBUNE_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path)}
    result = run_cli(["deploy"], cwd=folder, env=env)
    assert result.returncode == 1
    assert "Deploy #1 failed: " in result.stderr and "The web process stopped while starting" in result.stderr
