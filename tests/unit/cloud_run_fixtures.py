"""Fixtures for the Cloud Run tests: the fake Google endpoints, the Cloud
Storage emulator, a backend pointed at both, and a guard that fails a test
whose code tries to reach, or even look up, any address but loopback (the
metadata server 169.254.169.254, oauth2.googleapis.com, ...)."""

import ipaddress
import socket

import pytest

from tests.support.fake_gcp import FakeGCP
from tests.support.ports import free_port

PROJECT = "hk-test"
REGION = "europe-west1"
BUCKET = "hk-test_cloudbuild"


@pytest.fixture(scope="session")
def storage_emulator():
    """gcp-storage-emulator in this process, on loopback, in memory."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
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

    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        # A name is not even looked up unless it is loopback's: a DNS query for
        # a Google host is traffic too.
        name = host.decode() if isinstance(host, bytes) else host
        try:
            loopback = name is None or ipaddress.ip_address(name).is_loopback
        except ValueError:
            loopback = name == "localhost"
        if not loopback:
            attempts.append((name, "lookup"))
            raise socket.gaierror(socket.EAI_NONAME, f"test tried to look up {name}: only loopback is allowed")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
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
            "iam": fake.url,
            "storage": storage_url,
        },
        **extra,
    }


@pytest.fixture
def cloudrun_target(settings, fake_gcp, storage_emulator):
    """The platform's targets: "local" (the dummy backend) and "cloudrun" on the fakes."""
    settings.RUNTIME_BACKENDS = {
        "local": {"BACKEND": "hakobune.runtime.dummy.DummyBackend", "OPTIONS": {}},
        "cloudrun": {"BACKEND": "hakobune.runtime.cloud_run.CloudRunBackend",
                     "OPTIONS": backend_options(fake_gcp, storage_emulator, stack_images=settings.STACK_IMAGES)},
    }
    return fake_gcp


@pytest.fixture
def cloud_run(fake_gcp, storage_emulator):
    from hakobune.runtime.cloud_run import CloudRunBackend

    return CloudRunBackend("cloudrun", **backend_options(fake_gcp, storage_emulator))


def service_account_key(fake, email="deployer@acme-prod.iam.gserviceaccount.com", project="acme-prod") -> dict:
    """A real service-account key (a fresh RSA key) whose token_uri is the
    fake's token endpoint, which trusts it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake.trusted_keys[email] = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account", "project_id": project, "private_key_id": "0123abcd", "private_key": pem,
        "client_email": email, "client_id": "1234567890", "token_uri": f"{fake.url}/token",
    }


def run_pipeline(service, owner, queued_tasks, app="flask-hello"):
    """Deploys `app` to `service` through the pipeline's tasks, one after the other."""
    from hakobune.platform.builds.models import BuildStatus
    from hakobune.platform.services.services import deploy_service
    from hakobune.worker import tasks
    from tests.conftest import upload_of

    build = deploy_service(service=service, source_file=upload_of(app), created_by=owner)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    tasks.build_image(build.id)
    build.refresh_from_db()
    assert build.status == BuildStatus.DEPLOYING, build.failure_reason
    tasks.deploy_release(build.id)
    build.refresh_from_db()
    return build


def cloud_monitoring_series(end: str) -> dict:
    """What (fake) Cloud Monitoring answers for a service: one one-minute point
    ending at `end` (RFC 3339) per metric and group, keyed by metric type."""
    start = end  # only the end matters to Hakobune

    def series(labels, value, reducer=None):
        point = {"interval": {"startTime": start, "endTime": end}, "value": value}
        return {"metric": {"labels": labels}, "points": [point], **({"_reducer": reducer} if reducer else {})}

    return {
        "run.googleapis.com/request_count": [series({"response_code_class": "2xx"}, {"int64Value": "42"}),
                                             series({"response_code_class": "5xx"}, {"int64Value": "3"})],
        "run.googleapis.com/request_latencies": [series({}, {"doubleValue": 12.5}, "REDUCE_PERCENTILE_50"),
                                                 series({}, {"doubleValue": 80.0}, "REDUCE_PERCENTILE_95"),
                                                 series({}, {"doubleValue": 120.0}, "REDUCE_PERCENTILE_99")],
        "run.googleapis.com/container/cpu/utilizations": [series({}, {"doubleValue": 0.35})],
        "run.googleapis.com/container/memory/utilizations": [series({}, {"doubleValue": 0.5})],
        "run.googleapis.com/container/instance_count": [series({"state": "active"}, {"int64Value": "2"})],
    }
