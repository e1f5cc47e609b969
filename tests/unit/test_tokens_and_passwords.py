"""API tokens follow the password: the first admin's one-time password buys no
token until they chose their own, and a password change, by any way, revokes
the tokens made before it."""


from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.management import call_command
from django.urls import reverse

from hakobune.platform.accounts.models import ApiToken
from hakobune.platform.accounts.services import reset_one_time_password
from hakobune.platform.accounts.tokens import create_api_token

from tests.support.logins import ask_token, log_in

API = "/api/v1"
RIGHT = "correct horse battery"


class UpgradedHasher(MD5PasswordHasher):
    """A hasher preferred to the one a password was stored with (as after a
    Django upgrade), and as quick."""

    algorithm = "upgraded-md5"


# -- the first admin ---------------------------------------------------------------------------


def test_the_first_admin_gets_no_token_until_they_choose_a_password(client, db, capsys):
    call_command("create_first_admin")
    one_time = capsys.readouterr().out.split("password:")[1].split()[0]

    refused = ask_token(client, "admin", one_time)
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "password_change_required"
    assert "Choose your own password first" in body["error"] and "portal" in body["error"]
    assert not ApiToken.objects.exists()

    log_in(client, "admin", one_time)
    client.post(reverse("accounts:password_change"), {
        "old_password": one_time, "new_password1": "a long new secret 42", "new_password2": "a long new secret 42",
    })
    assert ask_token(client, "admin", one_time).status_code == 401
    assert ask_token(client, "admin", "a long new secret 42").status_code == 201


def test_a_new_one_time_password_revokes_tokens_and_gets_none(client, db, capsys):
    call_command("create_first_admin")
    capsys.readouterr()
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("the admin's own choice")
    admin.save()
    admin.profile.must_change_password = False
    admin.profile.save()
    _, token = create_api_token(user=admin, name="laptop")

    call_command("create_first_admin", reset=True)  # make admin-password
    one_time = capsys.readouterr().out.split("password:")[1].split()[0]
    assert client.get(f"{API}/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    assert ask_token(client, "admin", one_time).json()["code"] == "password_change_required"


# -- a password change revokes the tokens ------------------------------------------------------


def test_tokens_made_before_a_password_change_are_refused_after_it(client, login, owner):
    _, laptop = create_api_token(user=owner, name="laptop")
    _, ci = create_api_token(user=owner, name="ci", expires_in_days=30)
    assert client.get(f"{API}/me/", HTTP_AUTHORIZATION=f"Bearer {laptop}").status_code == 200

    portal = login(owner)
    page = portal.get(reverse("accounts:password_change")).content.decode()
    assert "revokes your API tokens" in page
    response = portal.post(reverse("accounts:password_change"), {
        "old_password": RIGHT, "new_password1": "a long new secret 42", "new_password2": "a long new secret 42",
    }, follow=True)
    assert "Your 2 API tokens were revoked" in response.content.decode()

    portal.logout()
    for token in (laptop, ci):
        refused = client.get(f"{API}/me/", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert refused.status_code == 401
        assert "revoked when the account's password changed" in refused.json()["error"]
    _, fresh = create_api_token(user=owner, name="laptop again")
    assert client.get(f"{API}/me/", HTTP_AUTHORIZATION=f"Bearer {fresh}").status_code == 200


def test_any_password_change_revokes_the_tokens_but_a_hash_upgrade_does_not(client, owner, settings):
    _, token = create_api_token(user=owner, name="laptop")
    # Django rehashes a password with the preferred hasher when it is checked:
    # the same password, so the token keeps working.
    settings.PASSWORD_HASHERS = [f"{__name__}.UpgradedHasher", "django.contrib.auth.hashers.MD5PasswordHasher"]
    before = owner.password
    assert owner.check_password(RIGHT) and owner.password != before
    assert client.get(f"{API}/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200

    owner.set_password("chosen by an administrator")  # the admin site, manage.py changepassword
    owner.save()
    assert client.get(f"{API}/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401

    _, token = create_api_token(user=owner, name="again")
    reset_one_time_password(owner)
    assert client.get(f"{API}/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
