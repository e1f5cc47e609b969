"""Logging in as a person does, through the portal's form or the API's
token endpoint, so that lockouts and password rules apply."""

import json

from django.urls import reverse

API = "/api/v1"


def ask_token(client, username, password, **extra):
    return client.post(
        f"{API}/auth/token", json.dumps({"username": username, "password": password}),
        content_type="application/json", **extra,
    )


def log_in(client, username, password, **extra):
    return client.post(reverse("accounts:login"), {"username": username, "password": password}, **extra)
