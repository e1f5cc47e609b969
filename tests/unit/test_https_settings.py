"""A portal on a real domain is reached over HTTPS only: secure cookies, HSTS,
and the TLS proxy's header trusted; on localhost none of it. The rule is a pure
function of the environment (transport_security), so it is tested without
reloading the settings."""

import os

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from hakobune.platform.transport_security import transport_security

RIGHT = "correct horse battery"


def log_in(client, username, password, **extra):
    return client.post(reverse("accounts:login"), {"username": username, "password": password}, **extra)


def test_a_real_domain_gets_secure_cookies_hsts_and_the_proxy_header():
    real = transport_security({"BASE_DOMAIN": "paas.example.org"})
    assert real["HTTPS"] and real["SESSION_COOKIE_SECURE"] and real["CSRF_COOKIE_SECURE"]
    assert real["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert real["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert not real["SECURE_HSTS_INCLUDE_SUBDOMAINS"]

    for laptop in ({}, {"BASE_DOMAIN": "localhost"}, {"BASE_DOMAIN": "apps.localhost"}):
        off = transport_security(laptop)
        assert not (off["HTTPS"] or off["SESSION_COOKIE_SECURE"] or off["CSRF_COOKIE_SECURE"])
        assert off["SECURE_HSTS_SECONDS"] == 0 and off["SECURE_PROXY_SSL_HEADER"] is None


def test_https_can_be_forced_on_or_off_and_each_value_set():
    assert transport_security({"BASE_DOMAIN": "localhost", "HTTPS": "1"})["SESSION_COOKIE_SECURE"]
    off = transport_security({"BASE_DOMAIN": "paas.example.org", "HTTPS": "0"})
    assert not off["SESSION_COOKIE_SECURE"] and off["SECURE_HSTS_SECONDS"] == 0
    tuned = transport_security({
        "BASE_DOMAIN": "paas.example.org", "SECURE_HSTS_SECONDS": "3600", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Scheme",
    })
    assert tuned["SECURE_HSTS_SECONDS"] == 3600 and tuned["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert tuned["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_SCHEME", "https")
    with pytest.raises(ValueError, match="SECURE_HSTS_SECONDS"):
        transport_security({"SECURE_HSTS_SECONDS": "a year"})


def test_the_settings_are_the_rule_applied_to_the_environment():
    expected = transport_security(os.environ)
    for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER"):
        assert getattr(django_settings, name) == expected[name], name


def test_over_https_the_portal_sends_hsts_and_secure_cookies(client, owner, settings):
    for name, value in transport_security({"BASE_DOMAIN": "paas.example.org"}).items():
        setattr(settings, name, value)
    assert "Strict-Transport-Security" not in client.get(reverse("accounts:login"))  # plain HTTP: the header means nothing
    page = client.get(reverse("accounts:login"), HTTP_X_FORWARDED_PROTO="https")
    assert page["Strict-Transport-Security"].startswith("max-age=31536000")
    assert page.cookies["csrftoken"]["secure"]
    response = log_in(client, "olivia", RIGHT, HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 302 and response.cookies["sessionid"]["secure"]
