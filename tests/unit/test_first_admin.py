"""The first administrator: a one-time password, shown once, replaced at
first login."""

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse


def test_the_first_admin_gets_a_one_time_password_shown_once(db, capsys):
    call_command("create_first_admin")
    first = capsys.readouterr().out
    assert "login:     admin" in first
    password = first.split("password:")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    assert admin.memberships.get().team.name == "admin"

    call_command("create_first_admin")
    second = capsys.readouterr().out
    assert password not in second
    assert "make admin-password" in second


def test_the_admin_must_choose_a_password_before_anything_else(client, db, capsys):
    call_command("create_first_admin")
    password = capsys.readouterr().out.split("password:")[1].split()[0]
    client.post(reverse("accounts:login"), {"username": "admin", "password": password})
    response = client.get(reverse("services:dashboard"))
    assert response.status_code == 302 and response["Location"] == reverse("accounts:password_change")

    response = client.post(
        reverse("accounts:password_change"),
        {"old_password": password, "new_password1": "a long new secret 42", "new_password2": "a long new secret 42"},
    )
    assert response.status_code == 302
    assert client.get(reverse("services:dashboard")).status_code == 200
