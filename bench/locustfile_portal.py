"""The people of bench/portal_load.py, for locust: each one is a seeded
person (an owner, a developer or a viewer of one to a few teams) who logs in
to the portal once, then browses (the dashboard, a service's page, a deploy's
page, its log and status as the page polls them, the metrics charts, the
runtime status), uses the API with their token (teams, services, a service,
a build and its log, metrics JSON), and, for developers and owners, now and
then deploys a small archive through the API.

Reads the seeded plan from LOAD_PLAN (written by bench/portal_seed.py). Each
request is named by its page, not its URL, so that the statistics are per
page."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import re
import tarfile
import time
from pathlib import Path

import requests
from locust import HttpUser, between, events, task

PLAN = json.loads(Path(os.environ["LOAD_PLAN"]).read_text())
PEOPLE = itertools.cycle(PLAN["people"])
APP = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "apps" / "flask-hello"


def _archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(APP.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(APP)))
    return buffer.getvalue()


ARCHIVE = _archive()
DEPLOYS = os.environ.get("LOAD_DEPLOYS", "1") == "1"


# Logging in costs a password hash (Django's PBKDF2, hundreds of ms of CPU
# each) and happens once per person, during the ramp: its times are kept here
# and written to LOAD_LOGINS, while the statistics are reset once every
# person has started (locust --reset-stats), so that they tell the steady state.
LOGIN_TIMES: list[float] = []


@events.test_stop.add_listener
def _write_login_times(**_kwargs):
    if os.environ.get("LOAD_LOGINS"):
        Path(os.environ["LOAD_LOGINS"]).write_text(json.dumps(LOGIN_TIMES))


class Person(HttpUser):
    wait_time = between(float(os.environ.get("LOAD_WAIT_MIN", "1")), float(os.environ.get("LOAD_WAIT_MAX", "3")))

    def on_start(self):
        self.person = next(PEOPLE)
        self.rng = random.Random(self.person["username"])
        self.api = {"Authorization": f"Bearer {self.person['token']}"}
        self.client.trust_env = False
        # Logged in outside locust's statistics (a person's logins often
        # outlast the ramp under load, and --reset-stats would count them
        # among the pages): timed here, reported apart.
        started = time.perf_counter()
        session = requests.Session()
        session.trust_env = False
        page = session.get(self.host + "/login/", timeout=120)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        answer = session.post(
            self.host + "/login/",
            data={"username": self.person["username"], "password": PLAN["password"],
                  "csrfmiddlewaretoken": token.group(1) if token else ""},
            headers={"Referer": self.host + "/login/"}, timeout=120, allow_redirects=False,
        )
        if answer.status_code != 302:
            raise RuntimeError(f"{self.person['username']} could not log in: {answer.status_code}")
        LOGIN_TIMES.append(time.perf_counter() - started)
        self.client.cookies.update(session.cookies)

    # -- what a person looks at -----------------------------------------------

    def _pick(self, deployer=False):
        teams = [t for t in self.person["teams"] if not deployer or t["role"] in ("owner", "developer")]
        if not teams:
            return None, None
        team = self.rng.choice(teams)["team"]
        return team, self.rng.choice(PLAN["services"][team])

    def _build(self, service):
        # Recent deploys are looked at far more than old ones.
        builds = service["builds"]
        return builds[-1 - min(int(self.rng.expovariate(0.5)), len(builds) - 1)]

    @task(10)
    def dashboard(self):
        self.client.get("/", name="dashboard")

    @task(10)
    def service_page(self):
        team, service = self._pick()
        self.client.get(f"/t/{team}/{service['name']}/", name="service page")

    @task(4)
    def build_page(self):
        team, service = self._pick()
        build = self._build(service)
        self.client.get(f"/t/{team}/{service['name']}/builds/{build['number']}/", name="build page")

    @task(6)
    def build_log_and_status(self):
        team, service = self._pick()
        build = self._build(service)
        base = f"/t/{team}/{service['name']}/builds/{build['number']}/"
        self.client.get(base + "log/", name="build log (lines)")
        self.client.get(base + "status/", name="build status")

    @task(5)
    def metrics_charts(self):
        team, service = self._pick()
        chosen = self.rng.choice(["1h", "1h", "6h", "24h", "48h"])
        self.client.get(f"/t/{team}/{service['name']}/metrics/?range={chosen}", name="metrics charts")

    @task(2)
    def runtime_status(self):
        team, service = self._pick()
        self.client.get(f"/t/{team}/{service['name']}/runtime/", name="runtime status")

    # -- the API --------------------------------------------------------------

    @task(2)
    def api_lists(self):
        self.client.get("/api/v1/teams/", headers=self.api, name="API teams")
        team, _ = self._pick()
        self.client.get(f"/api/v1/teams/{team}/services/", headers=self.api, name="API services")

    @task(3)
    def api_service(self):
        team, service = self._pick()
        self.client.get(f"/api/v1/teams/{team}/services/{service['name']}/", headers=self.api, name="API service")

    @task(3)
    def api_build(self):
        _, service = self._pick()
        build = self._build(service)
        self.client.get(f"/api/v1/builds/{build['id']}/", headers=self.api, name="API build")
        self.client.get(f"/api/v1/builds/{build['id']}/log", headers=self.api, name="API build log")

    @task(4)
    def api_metrics(self):
        team, service = self._pick()
        since = self.rng.choice(["1h", "6h", "24h"])
        self.client.get(
            f"/api/v1/teams/{team}/services/{service['name']}/metrics?since={since}&step=60",
            headers=self.api, name="API metrics (JSON)",
        )

    # -- deploying --------------------------------------------------------------

    @task(1)
    def deploy(self):
        if not DEPLOYS:
            return
        team, service = self._pick(deployer=True)
        if team is None:
            return
        with self.client.post(
            f"/api/v1/teams/{team}/services/{service['name']}/deploys/",
            headers=self.api, files={"source": ("app.tar.gz", ARCHIVE, "application/gzip")},
            name="API deploy (upload)", catch_response=True,
        ) as response:
            if response.status_code == 202:
                response.success()
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")
