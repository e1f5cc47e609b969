import pytest


@pytest.fixture(autouse=True)
def _isolated_files(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def dummy_backend(settings):
    """Services created in the test run on the dummy backend, which records calls."""
    from hakobune.platform.services.backends import get_backend

    settings.RUNTIME_BACKENDS = {"local": {"BACKEND": "hakobune.runtime.dummy.DummyBackend", "OPTIONS": {}}}
    return get_backend("local")


@pytest.fixture
def queued_tasks(monkeypatch):
    """Records tasks the code under test enqueues, instead of sending them to Redis."""
    from hakobune.worker import tasks

    sent = []
    for name in ("fetch_source", "detect_stack", "build_image", "deploy_release", "start_release", "destroy_service"):
        task = getattr(tasks, name)
        monkeypatch.setattr(task, "delay", lambda object_id, _name=name: sent.append((_name, object_id)))
    return sent
