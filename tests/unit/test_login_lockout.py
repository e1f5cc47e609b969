"""Guessing passwords is locked out: after LOGIN_FAILURE_LIMIT failed logins,
in the portal or at POST /api/v1/auth/token, the same person from the same
address is refused, even with the right password, until the cool-off has
passed; the answer says when to try again."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import RequestFactory
from django.urls import reverse

from hakobune.platform.accounts.lockout import client_ip
from hakobune.platform.accounts.models import ApiToken

from tests.support.logins import ask_token, log_in

API = "/api/v1"
RIGHT = "correct horse battery"


def logged_in(client) -> bool:
    return client.get(reverse("services:dashboard")).status_code == 200


@pytest.fixture
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    return 3


def cool_off_passes():
    """As if the cool-off had gone by since the last failure."""
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.first().attempt_time - timedelta(minutes=16))


def test_failed_portal_logins_lock_out_even_the_right_password(client, owner, limit):
    for _ in range(limit - 1):
        assert log_in(client, "olivia", "guess").status_code == 200  # the form again, with its error
    locked = log_in(client, "olivia", "guess")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many failed logins" in page and "Try again in 15 minutes" in page
    assert 14 * 60 < int(locked["Retry-After"]) <= 15 * 60

    again = log_in(client, "olivia", RIGHT)
    assert again.status_code == 429 and "Too many failed logins" in again.content.decode()
    assert not logged_in(client)

    cool_off_passes()
    assert log_in(client, "olivia", RIGHT).status_code == 302
    assert logged_in(client)


def test_failed_token_requests_lock_out_the_token_endpoint(client, owner, limit):
    for _ in range(limit - 1):
        assert ask_token(client, "olivia", "guess").status_code == 401
    locked = ask_token(client, "olivia", "guess")
    assert locked.status_code == 429
    body = locked.json()
    assert body["code"] == "locked_out" and "Try again in 15 minutes" in body["error"]
    assert 14 * 60 < body["retry_after"] <= 15 * 60 and locked["Retry-After"] == str(body["retry_after"])

    refused = ask_token(client, "olivia", RIGHT)
    assert refused.status_code == 429 and refused.json()["code"] == "locked_out"
    assert not ApiToken.objects.exists()

    cool_off_passes()
    assert ask_token(client, "olivia", RIGHT).status_code == 201


def test_failures_in_the_portal_and_the_api_count_together(client, owner, limit):
    log_in(client, "olivia", "guess")
    ask_token(client, "olivia", "guess")
    assert log_in(client, "olivia", "guess").status_code == 429
    assert ask_token(client, "olivia", RIGHT).status_code == 429


def test_a_lockout_is_of_one_person_at_one_address(client, owner, outsider, limit):
    """Nobody can lock another person out from elsewhere, nor lock out others
    at their own address by guessing one person's password."""
    for _ in range(limit):
        ask_token(client, "olivia", "guess", REMOTE_ADDR="203.0.113.9")
    assert ask_token(client, "olivia", RIGHT, REMOTE_ADDR="203.0.113.9").status_code == 429
    assert ask_token(client, "olivia", RIGHT, REMOTE_ADDR="198.51.100.7").status_code == 201
    assert ask_token(client, "oscar", RIGHT, REMOTE_ADDR="203.0.113.9").status_code == 201


def test_behind_a_proxy_the_address_is_the_one_the_proxy_saw(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")
    settings.PORTAL_PROXY_COUNT = 0
    assert client_ip(request) == "127.0.0.1"  # no proxy: a client writes X-Forwarded-For itself
    settings.PORTAL_PROXY_COUNT = 1
    assert client_ip(request) == "203.0.113.9"  # not the 1.2.3.4 the client wrote
    settings.PORTAL_PROXY_COUNT = 3
    assert client_ip(request) == "127.0.0.1"
