"""`hakobune run -- CMD` for real: the installed command opens the live
portal's WebSocket, a one-off container of the service's live release runs
CMD with the release's environment and network, attached to the terminal
(a pseudo-terminal when there is one), and the portal lists what ran, by whom.
A viewer may not; an outsider finds no such service."""

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model

from hakobune.platform.accounts.models import Membership, Role
from hakobune.platform.accounts.services import create_team
from hakobune.platform.accounts.tokens import create_api_token
from hakobune.platform.services.models import OneOffRun, Service
from hakobune.runtime.docker_local import LABEL_ONEOFF, LABEL_TEAM
from tests.conftest import APPS_DIR

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HAKOBUNE = Path(sys.executable).parent / "hakobune"


def cli_env(portal, token, tmp_path, team):
    return {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "HAKOBUNE_URL": portal.url, "HAKOBUNE_TOKEN": token, "HAKOBUNE_TEAM": team,
        "XDG_CONFIG_HOME": str(tmp_path / "config"), "LANG": "C.UTF-8",
    }


def run_cli(args, *, cwd, env, input=None, timeout=300):
    return subprocess.run([str(HAKOBUNE), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          input=input, timeout=timeout)


def run_under_a_terminal(args, *, cwd, env, send: bytes, until: re.Pattern, timeout=120) -> tuple[str, int]:
    """Runs the CLI with a pseudo-terminal as its stdin and stdout, types
    `send` once it has started, and reads until `until` matches and it ends."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([str(HAKOBUNE), *args], cwd=cwd, env=env, stdin=terminal, stdout=terminal,
                               stderr=subprocess.PIPE, close_fds=True)
    os.close(terminal)
    seen, sent = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the CLI ended and closed its side
                    break
                seen += chunk
            if not sent and b"ready" in seen:
                os.write(controller, send)
                sent = True
            if until.search(seen.decode(errors="replace")) and process.poll() is not None:
                break
        code = process.wait(timeout=30)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
    return seen.decode(errors="replace") + process.stderr.read().decode(errors="replace"), code


@pytest.fixture
def live_service(portal, owner, team_name, worker, tmp_path):
    """Team `team_name` with the service hello, deployed from flask-hello through the CLI."""
    create_team(name=team_name, owner=owner)
    _, token = create_api_token(user=owner, name="cli")
    folder = tmp_path / "hello"
    shutil.copytree(APPS_DIR / "flask-hello", folder)
    env = cli_env(portal, token, tmp_path, team_name)
    deployed = run_cli(["deploy"], cwd=folder, env=env, timeout=600)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    return folder, env


def test_a_developer_runs_commands_in_the_live_release_and_the_portal_lists_them(
        live_service, portal, owner, team_name, docker_client):
    folder, env = live_service
    service = Service.objects.get(team__name=team_name, name="hello")

    # Output on both streams and the command's own exit code, with no terminal.
    ran = run_cli(["run", "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"], cwd=folder, env=env)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert ran.stdout == "to-stdout\n" and "to-stderr" in ran.stderr

    # Its stdin is the terminal's (here a pipe, ended by end-of-file).
    echoed = run_cli(["run", "--", "cat"], cwd=folder, env=env, input="a line typed\nand another\n")
    assert echoed.returncode == 0 and echoed.stdout == "a line typed\nand another\n", echoed.stdout + echoed.stderr

    # The release's environment, and the team's network: the web instance answers by its name.
    inside = run_cli(["run", "--", "python", "-c", (
        "import os, urllib.request; print(os.environ['PORT']); "
        "print(urllib.request.urlopen('http://hello:8080/', timeout=10).read().decode()[:19])")],
        cwd=folder, env=env)
    assert inside.returncode == 0, inside.stdout + inside.stderr
    assert inside.stdout.splitlines() == ["8080", "Hello from Hakobune"]

    # Under a pseudo-terminal: a TTY inside, and a typed line comes back.
    output, code = run_under_a_terminal(
        ["run", "--", "sh", "-c", "tty; echo ready; read line; echo \"got:$line\""], cwd=folder, env=env,
        send=b"ping\r", until=re.compile(r"got:ping"))
    assert code == 0, output
    assert re.search(r"/dev/pts/\d+", output) and "got:ping" in output, output

    # Nothing is left running, and the portal lists each run, by whom, with its exit code.
    assert not docker_client.containers.list(
        all=True, filters={"label": [f"{LABEL_TEAM}={team_name}", f"{LABEL_ONEOFF}=run"]})
    runs = list(OneOffRun.objects.filter(service=service).order_by("id"))
    assert [(run.status, run.exit_code, run.started_by_name, run.tty) for run in runs] == [
        ("exited", 3, owner.username, False), ("exited", 0, owner.username, False),
        ("exited", 0, owner.username, False), ("exited", 0, owner.username, True)]
    assert runs[0].release == service.live_release
    session = requests.Session()
    session.trust_env = False
    listed = session.get(f"{portal.url}/api/v1/teams/{team_name}/services/hello/runs/",
                         headers={"Authorization": f"Bearer {env['HAKOBUNE_TOKEN']}"}, timeout=30).json()
    assert [run["command"] for run in listed["runs"]][-1] == "sh -c 'echo to-stdout; echo to-stderr >&2; exit 3'"
    assert {run["started_by"] for run in listed["runs"]} == {owner.username}
    # And the service's events say who ran what.
    from hakobune.platform.observability.models import Event

    ran_events = Event.objects.filter(service=service, kind="run.started")
    assert sorted(ran_events.values_list("actor_label", flat=True)) == [owner.username] * 4


def test_a_viewer_may_not_run_commands_and_an_outsider_finds_no_service(
        live_service, portal, team_name, tmp_path):
    folder, _ = live_service
    team = Service.objects.get(team__name=team_name, name="hello").team
    users = get_user_model().objects
    viewer = users.create_user(username="vera", password="x")
    Membership.objects.create(team=team, user=viewer, role=Role.VIEWER)
    outsider = users.create_user(username="otto", password="x")
    create_team(name=f"{team_name}x", owner=outsider)

    _, viewer_token = create_api_token(user=viewer, name="cli")
    refused = run_cli(["run", "--", "id"], cwd=folder, env=cli_env(portal, viewer_token, tmp_path, team_name))
    assert refused.returncode != 0 and "run commands" in refused.stderr, refused.stdout + refused.stderr

    _, outsider_token = create_api_token(user=outsider, name="cli")
    hidden = run_cli(["run", "--", "id"], cwd=folder, env=cli_env(portal, outsider_token, tmp_path, team_name))
    assert hidden.returncode != 0 and "No service hello" in hidden.stderr, hidden.stdout + hidden.stderr

    no_token = run_cli(["run", "--", "id"], cwd=folder, env=cli_env(portal, "hkb_not-a-token", tmp_path, team_name))
    assert no_token.returncode != 0 and "API token" in no_token.stderr, no_token.stdout + no_token.stderr

    assert not OneOffRun.objects.exists()
