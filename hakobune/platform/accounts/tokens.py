"""API tokens: created and revoked by their person, stored as a SHA-256. A
password change revokes all of the person's tokens; a person who must still
choose their own password gets none."""

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from .models import ApiToken, Profile

TOKEN_PREFIX = "hkb_"
# Writing last_used_at on every request would make each API call a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_TOKEN_DAYS = 3650
PASSWORD_CHANGED = "the account's password changed"


class PasswordChangeRequired(Exception):
    """The person logged in with a one-time password and has not chosen their own."""

    def __init__(self):
        super().__init__(
            "Choose your own password first: log in to the portal with the one-time password, "
            "pick a new one there, then ask for a token with it."
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def create_api_token(*, user, name: str, expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    """Returns the token's record and the token itself, which is never stored."""
    if must_change_password(user):
        raise PasswordChangeRequired()
    name = (name or "").strip()[:100] or "API token"
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise ValueError(f"A token expires in 1 to {MAX_TOKEN_DAYS} days, or never.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=token[:12],
        token_hash=hash_token(token),
        expires_at=timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    return record, token


def must_change_password(user) -> bool:
    return Profile.objects.filter(user=user, must_change_password=True).exists()


def revoke_api_token(*, token: ApiToken) -> None:
    ApiToken.objects.filter(id=token.id, revoked_at__isnull=True).update(revoked_at=timezone.now())


def active_api_tokens(user):
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
    )


def revoke_api_tokens_of(user, *, reason: str) -> int:
    """Revokes every token of the person that still works; returns how many."""
    return active_api_tokens(user).update(revoked_at=timezone.now(), revoked_reason=reason[:100])


class RevokeApiTokensOnPasswordChange:
    """Listed in AUTH_PASSWORD_VALIDATORS for Django's password_changed() call,
    which follows every saved set_password() (the portal, the admin,
    `manage.py changepassword`, `make admin-password`) but not a hash upgrade:
    a token made with the old password stops working with it."""

    def validate(self, password, user=None):
        return None

    def password_changed(self, password, user=None):
        if user is not None and user.pk is not None:
            revoke_api_tokens_of(user, reason=PASSWORD_CHANGED)

    def get_help_text(self):
        return gettext("Changing your password revokes your API tokens: the CLI and scripts need a new one.")


def user_for_token(token: str):
    """The active user a token belongs to; None for an unknown, revoked or
    expired token, or an inactive user."""
    if not token or not token.startswith(TOKEN_PREFIX):
        return None, None
    record = ApiToken.objects.select_related("user").filter(token_hash=hash_token(token)).first()
    if record is None or not record.is_active or not record.user.is_active:
        return None, record
    now = timezone.now()
    if record.last_used_at is None or now - record.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(id=record.id).update(last_used_at=now)
    return record.user, record
