"""Followed logs cannot starve the portal: with many `?follow=1` streams open
at once on the portal served as `make run` serves it, a page still answers,
and every stream still gets its news."""

import secrets
import threading
import time

import pytest
import requests

from hakobune.platform.accounts.models import Membership, Role
from hakobune.platform.accounts.services import create_team
from hakobune.platform.accounts.tokens import create_api_token
from hakobune.platform.builds.models import Build, BuildLogLine, BuildStatus
from hakobune.platform.services.services import create_service
from tests.conftest import _user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Twice the threads the portal once had (2 processes × 4 threads), from two
# people (each may follow 8 at once in a process).
STREAMS = 16
# Generous: a page answers in well under a second on an idle host; this only
# tells "answers" from "never answers".
PAGE_TIMEOUT = 30


def _session():
    session = requests.Session()
    session.trust_env = False
    return session


class Follower:
    """One `?follow=1` stream, read from a thread of the test's own."""

    def __init__(self, url, token):
        self.url, self.token = url, token
        self.events = []
        self.error = None
        self.opened = threading.Event()
        self.got_news = threading.Event()
        self.response = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            self.response = _session().get(self.url, headers={"Authorization": f"Bearer {self.token}",
                                                              "Accept": "text/event-stream"},
                                           stream=True, timeout=(10, 60))
            self.response.raise_for_status()
            for line in self.response.iter_lines(chunk_size=1, decode_unicode=True):
                if line.startswith("data: "):
                    self.events.append(line[len("data: "):])
                    self.opened.set()
                    if line.endswith("step 2 of 2"):
                        self.got_news.set()
                        return
        except Exception as exc:  # reported by the test; a closed stream ends here too
            self.error = exc
        finally:
            self.opened.set()

    def close(self):
        if self.response is not None:
            self.response.close()


def wait_all(events, timeout=PAGE_TIMEOUT):
    deadline = time.monotonic() + timeout
    for event in events:
        event.wait(timeout=max(0.0, deadline - time.monotonic()))


def test_many_follow_streams_open_at_once_and_a_portal_page_still_answers(portal, owner):
    team = create_team(name=f"st{secrets.token_hex(3)}", owner=owner)
    other = _user("stream-reader")
    Membership.objects.create(team=team, user=other, role=Role.VIEWER)
    service = create_service(team=team, name="hello", created_by=owner)
    build = Build.objects.create(service=service, number=1, source_archive="x.tar.gz", status=BuildStatus.BUILDING)
    BuildLogLine.objects.create(build=build, text="step 1 of 2")
    tokens = [create_api_token(user=person, name="follow")[1] for person in (owner, other)]
    url = f"{portal.url}/api/v1/builds/{build.id}/log?follow=1"

    followers = [Follower(url, tokens[n % 2]) for n in range(STREAMS)]
    try:
        wait_all([f.opened for f in followers])

        # Every stream is open and being served, and yet a page answers.
        page = _session().get(f"{portal.url}/login/", timeout=PAGE_TIMEOUT)
        assert page.status_code == 200 and "Log in" in page.text
        api = _session().get(f"{portal.url}/api/v1/teams/", headers={"Authorization": f"Bearer {tokens[0]}"},
                             timeout=PAGE_TIMEOUT)
        assert api.status_code == 200

        problems = [(n, repr(f.error)) for n, f in enumerate(followers) if f.error or not f.events]
        assert problems == [], problems
        assert all(f.events[0] == "step 1 of 2" for f in followers)

        # They stay live: a new line reaches every one of them.
        BuildLogLine.objects.create(build=build, text="step 2 of 2")
        wait_all([f.got_news for f in followers])
        assert [n for n, f in enumerate(followers) if not f.got_news.is_set()] == []
    finally:
        for follower in followers:
            follower.close()
