"""Fixtures for the Cloud Run tests: the fake Google endpoints, the Cloud
Storage emulator, a backend pointed at both, and a guard that fails a test
whose code tries to reach any address but loopback (the metadata server
169.254.169.254, oauth2.googleapis.com, ...)."""

import ipaddress
import socket

import pytest

from tests.support.fake_gcp import FakeGCP

PROJECT = "hk-test"
REGION = "europe-west1"
BUCKET = "hk-test_cloudbuild"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def storage_emulator():
    """gcp-storage-emulator in this process, on loopback, in memory."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Every connection must go to 127.0.0.0/8; google.auth must not look for
    a metadata server or a key on this host."""
    attempts = []
    real_connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        try:
            allowed = ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = isinstance(address, str) or host == "localhost"
        if not allowed:
            attempts.append(address)
            raise OSError(f"test tried to reach {address}: only loopback is allowed")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    yield attempts
    assert attempts == [], f"connections outside loopback were tried: {attempts}"


@pytest.fixture
def fake_gcp(storage_emulator):
    fake = FakeGCP(storage_url=storage_emulator, polls_before_done=2).start()
    yield fake
    fake.stop()


def backend_options(fake, storage_url, **extra):
    return {
        "project": PROJECT,
        "region": REGION,
        "repository": "apps",
        "bucket": BUCKET,
        "credentials": "anonymous",
        "poll_interval": 0.01,
        "endpoints": {
            "run": fake.url,
            "cloudbuild": fake.url,
            "logging": fake.url,
            "monitoring": fake.url,
            "artifactregistry": fake.url,
            "storage": storage_url,
        },
        **extra,
    }


@pytest.fixture
def cloud_run(fake_gcp, storage_emulator):
    from hakobune.runtime.cloud_run import CloudRunBackend

    return CloudRunBackend("cloudrun", **backend_options(fake_gcp, storage_emulator))
