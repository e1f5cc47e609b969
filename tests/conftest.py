"""Shared people and places for the suite: an owner, a developer, a viewer and
an outsider around one team, and the fixture apps as the archives a person
would upload."""

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from hakobune.platform.accounts.models import Membership, Role
from hakobune.platform.accounts.services import create_team

APPS_DIR = Path(__file__).parent / "fixtures" / "apps"


def archive_of(app: str, fmt: str = "tar.gz", *, folder: str | None = None, extra: dict[str, str] | None = None) -> bytes:
    """The fixture app packed the way people pack their folder: everything
    inside one top-level folder, as GitHub's "Download ZIP" does."""
    root = APPS_DIR / app
    folder = folder or app
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    for name, text in (extra or {}).items():
        files[name] = text.encode()
    buffer = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name, data in files.items():
                bundle.writestr(f"{folder}/{name}", data)
    else:
        mode = {"tar.gz": "w:gz", "tar": "w", "tar.xz": "w:xz"}[fmt]
        with tarfile.open(fileobj=buffer, mode=mode) as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload_of(app: str, fmt: str = "tar.gz", **kwargs) -> SimpleUploadedFile:
    return SimpleUploadedFile(f"{app}.{fmt}", archive_of(app, fmt, **kwargs), content_type="application/octet-stream")


def read_stream(response) -> str:
    """All of a streamed answer (the follow streams are async generators, as
    the portal serves them over ASGI). The test client closes the answer at
    its end, as a server does."""
    from asgiref.sync import async_to_sync

    async def drain():
        return [part async for part in response.streaming_content]

    parts = async_to_sync(drain)() if response.is_async else list(response.streaming_content)
    return b"".join(parts).decode()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _english_after_each_test():
    """A request in Japanese leaves its language active in the test's thread
    (as LocaleMiddleware does); the next test starts in English again."""
    yield
    from django.utils import translation

    translation.deactivate()


def _user(username):
    return get_user_model().objects.create_user(username=username, password="correct horse battery")


@pytest.fixture
def owner(db):
    return _user("olivia")


@pytest.fixture
def team(owner):
    return create_team(name="acme", owner=owner)


@pytest.fixture
def developer(team):
    user = _user("dev")
    Membership.objects.create(team=team, user=user, role=Role.DEVELOPER)
    return user


@pytest.fixture
def viewer(team):
    user = _user("vera")
    Membership.objects.create(team=team, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def outsider(db):
    user = _user("oscar")
    create_team(name="other", owner=user)
    return user


@pytest.fixture
def login(client):
    def as_user(user):
        client.force_login(user)
        return client

    return as_user
