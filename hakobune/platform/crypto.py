"""Encryption of secrets at rest (git tokens, env var values)."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

PREFIX = "fernet:"


def _fernet() -> Fernet:
    key = settings.ENCRYPTION_KEY
    if key:
        return Fernet(key.encode())
    derived = hashlib.sha256(b"hakobune-secrets:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(value: str) -> str:
    if not value:
        return ""
    return PREFIX + _fernet().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored:
        return ""
    if not stored.startswith(PREFIX):
        raise ValueError("not an encrypted value")
    try:
        return _fernet().decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise ValueError("the secret cannot be decrypted with this platform's key (was HAKOBUNE_ENCRYPTION_KEY changed?)")
