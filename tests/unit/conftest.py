import json

import pytest


@pytest.fixture(autouse=True)
def _isolated_files(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.DATA_DIR = tmp_path / "data"
    settings.WORKSPACE_DIR = tmp_path / "data" / "workspaces"
    # The free-disk check asks the Docker Engine where its data is; unit tests
    # that check it turn it on (test_disk.py).
    settings.BUILD_MIN_FREE_DISK_MB = 0


@pytest.fixture
def dummy_backend(settings):
    """Services created in the test run on the dummy backend, which records calls."""
    from hakobune.platform.services.backends import get_backend

    settings.RUNTIME_BACKENDS = {"local": {"BACKEND": "hakobune.runtime.dummy.DummyBackend", "OPTIONS": {}}}
    return get_backend("local")


@pytest.fixture
def queued_tasks(monkeypatch):
    """Records the tasks the code under test enqueues, (name, id), instead of
    sending them to Redis; routes rewritten (sync_router) are not listed."""
    from hakobune.platform import queue

    sent = []

    def record(name, *args, countdown=None, host=None):
        queue.task_name(name)
        if name != "sync_router":
            sent.append((name, *args))

    monkeypatch.setattr(queue, "enqueue", record)
    return sent


@pytest.fixture
def as_(client, django_capture_on_commit_callbacks):
    """Calls the API as `user` (by bearer token; None: nobody), running what
    the request queued on commit."""
    from tests.unit.test_api import bearer

    def call(user, method, path, body=None):
        kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body is not None else {}
        with django_capture_on_commit_callbacks(execute=True):
            return getattr(client, method)(path, **kwargs, **(bearer(user) if user else {}))

    return call
