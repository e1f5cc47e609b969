import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")

app = Celery("hakobune")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["hakobune.worker"])


@worker_ready.connect
def reconcile_when_ready(sender, **kwargs):
    """After a restart of the worker (or of dockerd, or of the host) bring every
    service back as the database wants it, at once."""
    sender.app.send_task("hakobune.worker.tasks.reconcile")
