"""API tokens: created and revoked by their person, stored as a SHA-256."""

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .models import ApiToken

TOKEN_PREFIX = "hkb_"
# Writing last_used_at on every request would make each API call a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_TOKEN_DAYS = 3650


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def create_api_token(*, user, name: str, expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    """Returns the token's record and the token itself, which is never stored."""
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


def revoke_api_token(*, token: ApiToken) -> None:
    ApiToken.objects.filter(id=token.id, revoked_at__isnull=True).update(revoked_at=timezone.now())


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
