"""Hostile sources, one test each: what the person is told, that nothing is
written outside the build's workspace, that no connection leaves for a
refused address, and that the worker's step ends normally (it does not die)."""

import io
import os
import socket
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django.urls import reverse

from hakobune.platform.builds import pipeline
from hakobune.platform.builds.models import Build
from hakobune.platform.services import sources
from hakobune.platform.services.models import Service
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.platform.services.views import service_new
from hakobune.worker import gitfetch, tasks
from tests.conftest import archive_of


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if anything opens a connection or resolves a name."""
    attempts = []

    def refuse_connect(self, address):
        attempts.append(address)
        raise AssertionError(f"a connection to {address} was attempted")

    def refuse_resolve(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"a name was resolved: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_resolve)
    return attempts


# -- git URLs, refused in the New service form ------------------------------------

HOSTILE_URLS = [
    ("-oProxyCommand=touch /tmp/pwned", "a URL cannot start with '-'"),
    ("--upload-pack=touch /tmp/pwned", "a URL cannot start with '-'"),
    ("ext::sh -c touch% /tmp/pwned", "'ext::' addresses are not allowed"),
    ("file:///etc/passwd", "file:// addresses are not allowed"),
    ("/srv/git/app.git", "that is not a web address"),
    ("ssh://-oProxyCommand=touch%20/tmp/pwned/repo", "ssh:// addresses are not allowed"),
    ("https://127.0.0.1/app.git", "127.0.0.1 is a loopback address"),
    ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("https://10.0.0.1/app.git", "10.0.0.1 is a private network address"),
    ("https://0x7f.1/app.git", "0x7f.1 is an IP address written in an unusual form"),
    ("https://[::ffff:127.0.0.1]/app.git", "::ffff:127.0.0.1 is a loopback address"),
    ("https://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal is an internal address"),
    ("https://2130706433/app.git", "2130706433 is an IP address written in an unusual form"),
]


@pytest.mark.parametrize("url, told", HOSTILE_URLS, ids=[url for url, _ in HOSTILE_URLS])
def test_a_hostile_git_url_is_refused_in_the_form(login, owner, team, queued_tasks, no_network, url, told):
    response = login(owner).post(
        reverse("services:new", args=["acme"]), {"name": "app", "source_kind": "git", "git_url": url, "git_ref": "main"}
    )
    assert response.status_code == 200
    assert told in response.content.decode().replace("&#x27;", "'")
    assert not Service.objects.exists() and queued_tasks == []
    assert no_network == []


def test_a_host_that_resolves_to_loopback_is_refused(login, owner, team, queued_tasks, monkeypatch):
    monkeypatch.setattr(sources, "resolver", lambda host, port: ["127.0.0.1"])
    response = login(owner).post(
        reverse("services:new", args=["acme"]),
        {"name": "app", "source_kind": "git", "git_url": "https://sneaky.example.com/app.git"},
    )
    assert "sneaky.example.com (which points to 127.0.0.1) is a loopback address" in response.content.decode()
    assert not Service.objects.exists()


def test_a_host_that_turns_private_after_creation_is_refused_by_the_worker(owner, team, queued_tasks, monkeypatch):
    monkeypatch.setattr(sources, "resolver", lambda host, port: ["93.184.216.34"])
    service = create_service(team=team, name="app", created_by=owner, git_url="https://rebind.example.com/app.git")
    build = deploy_service(service=service, created_by=owner)
    monkeypatch.setattr(sources, "resolver", lambda host, port: ["10.1.2.3"])
    monkeypatch.setattr(gitfetch.subprocess, "Popen", lambda *a, **k: pytest.fail("git must not run"))

    tasks.fetch_source(build.id)
    build.refresh_from_db()
    assert build.status == "failed"
    assert "rebind.example.com (which points to 10.1.2.3) is a private network address" in build.failure_reason


def test_a_bad_ref_is_refused_in_the_form(login, owner, team, queued_tasks, monkeypatch):
    monkeypatch.setattr(sources, "resolver", lambda host, port: ["93.184.216.34"])
    response = login(owner).post(
        reverse("services:new", args=["acme"]),
        {"name": "app", "source_kind": "git", "git_url": "https://example.com/a.git", "git_ref": "--upload-pack=x"},
    )
    assert "is not a branch, tag or commit name" in response.content.decode().replace("&#x27;", "'")


def test_credentials_pasted_in_the_url_become_the_encrypted_token(owner, team, queued_tasks, monkeypatch):
    monkeypatch.setattr(sources, "resolver", lambda host, port: ["93.184.216.34"])
    service = create_service(team=team, name="app", created_by=owner, git_url="https://bob:ghp_secret@example.com/a.git")
    assert service.git_url == "https://example.com/a.git"
    assert service.has_git_token and "ghp_secret" not in service.git_token_encrypted


# -- archives, refused by the worker's fetch step ---------------------------------------


def _tar(entries, mode="w:gz"):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
        for name, kind, data, extra in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data)
            for key, value in extra.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


def _file(name, data=b"x", **extra):
    return (name, tarfile.REGTYPE, data, extra)


def _zip(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in entries:
            bundle.writestr(name, data)
    return buffer.getvalue()


def _many_entries():
    return _tar([_file(f"app/f{i}", b"") for i in range(30_000)], mode="w:gz")


def _truncated():
    whole = archive_of("flask-hello", "tar.gz")
    return whole[: len(whole) // 2]


HOSTILE_ARCHIVES = {
    "zip slip": ("evil.zip", lambda: _zip([("app/../../../escaped.txt", b"x")]), "archives must stay inside their folder"),
    "tar traversal": ("evil.tar.gz", lambda: _tar([_file("../../etc/passwd", b"root::0:0")]),
                      "The archive has an entry '../../etc/passwd'; archives must stay inside their folder"),
    "absolute path": ("abs.tar.gz", lambda: _tar([_file("/tmp/hakobune-pwned")]), "absolute path"),
    "symlink to /etc": ("link.tar.gz", lambda: _tar([("etc", tarfile.SYMTYPE, b"", {"linkname": "/etc"}),
                                                     _file("etc/hakobune-pwned")]), "pointing outside the app's folder"),
    "hard link": ("hard.tar.gz", lambda: _tar([_file("a"), ("b", tarfile.LNKTYPE, b"", {"linkname": "/etc/shadow"})]),
                  "hard link"),
    "device file": ("dev.tar.gz", lambda: _tar([("null", tarfile.CHRTYPE, b"", {"devmajor": 1, "devminor": 3})]),
                    "special file (a device or pipe)"),
    "zip bomb": ("bomb.zip", lambda: _zip([("zeros.bin", b"\0" * (60 * 1024 * 1024))]), "how archive bombs look"),
    "30,000 entries": ("many.tar.gz", _many_entries, "more than 20,000 entries"),
    "truncated": ("cut.tar.gz", _truncated, "damaged or cut short"),
    "non-UTF-8 name": ("latin1.tar", lambda: _tar([_file("caf\udce9.py")], mode="w"), "not valid UTF-8"),
    "empty": ("empty.tar.gz", lambda: _tar([]), "holds no files"),
    "not an archive": ("notes.zip", lambda: b"just some text, not a zip", "not an archive Hakobune can read"),
}


@pytest.mark.parametrize("case", HOSTILE_ARCHIVES, ids=list(HOSTILE_ARCHIVES))
def test_a_hostile_archive_fails_its_deploy_with_a_reason(login, owner, team, queued_tasks, settings, tmp_path, case):
    filename, make, told = HOSTILE_ARCHIVES[case]
    service = create_service(team=team, name="app", created_by=owner)
    build = deploy_service(service=service, source_file=SimpleUploadedFile(filename, make()), created_by=owner)
    workspace = pipeline.workspace_dir(build.id)

    tasks.fetch_source(build.id)  # returns normally: the worker survives

    build.refresh_from_db()
    assert build.status == "failed" and build.failed_step == "fetching"
    assert told in build.failure_reason
    page = login(owner).get(reverse("services:detail", args=["acme", "app"])).content.decode().replace("&#x27;", "'")
    assert told in page
    # Nothing escaped the workspace, which is gone with the failed build.
    for outside in (workspace.parent / "escaped.txt", workspace.parents[1] / "escaped.txt",
                    tmp_path / "escaped.txt", "/tmp/hakobune-pwned", "/etc/hakobune-pwned"):
        assert not os.path.exists(outside), outside
    assert not workspace.exists()
    assert queued_tasks == [("admit_builds",)]  # only its free slot is announced


def test_setuid_bits_are_dropped_and_the_deploy_goes_on(owner, team, queued_tasks):
    service = create_service(team=team, name="app", created_by=owner)
    archive = _tar([_file("app/app.py", (b"from flask import Flask\napp = Flask(__name__)\n")),
                    _file("app/requirements.txt", b"flask\n"), _file("app/tool", b"#!/bin/sh\n", mode=0o4755)])
    build = deploy_service(service=service, source_file=SimpleUploadedFile("s.tar.gz", archive), created_by=owner)
    tasks.fetch_source(build.id)
    build.refresh_from_db()
    assert build.status == "detecting"
    tool = next(pipeline.workspace_dir(build.id).rglob("tool"))
    assert not tool.stat().st_mode & 0o4000


class _Zeros(io.RawIOBase):
    """A 300 MB request body that is made as it is read, never held whole."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        count = min(len(buffer), self.left)
        buffer[:count] = b"\0" * count
        self.left -= count
        return count


def test_a_300_mb_upload_is_refused_before_it_is_stored(owner, team, queued_tasks, settings, tmp_path):
    size = 300 * 1000 * 1000
    boundary = "hakobuneboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"source\"; filename=\"big.zip\"\r\n"
            "Content-Type: application/zip\r\n\r\n").encode()
    request = RequestFactory().generic(
        "POST",
        reverse("services:new", args=["acme"]),
        **{
            "wsgi.input": _Chain(head, _Zeros(size)),
            "CONTENT_LENGTH": str(len(head) + size),
            "CONTENT_TYPE": f"multipart/form-data; boundary={boundary}",
        },
    )
    request.user = owner
    request._dont_enforce_csrf_checks = True

    response = service_new(request, team="acme")
    assert response.status_code == 200
    assert "The upload is larger than 200 MB, the limit for an archive." in response.content.decode()
    assert not Service.objects.exists() and not Build.objects.exists()
    stored = [path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file()]
    assert stored == []


class _Chain(io.RawIOBase):
    def __init__(self, head: bytes, rest):
        self.head = io.BytesIO(head)
        self.rest = rest

    def readable(self):
        return True

    def readinto(self, buffer):
        count = self.head.readinto(buffer)
        if count:
            return count
        return self.rest.readinto(buffer)

    def read(self, size=-1):
        data = self.head.read(size)
        if data:
            return data
        return self.rest.read(size)
