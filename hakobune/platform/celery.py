import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")

app = Celery("hakobune")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["hakobune.worker"])


@worker_ready.connect
def reconcile_when_ready(sender, **kwargs):
    """After a restart of the worker (or of dockerd, or of the host) route and
    bring every service back as the database wants it, at once; and resume the pipeline's
    steps whose worker died: now, and again once the leases of steps this
    worker ran before it restarted have run out."""
    from django.conf import settings

    # The routes first: they need neither the firewall nor the runtime's
    # repair, which may wait for a host lock.
    sender.app.send_task("hakobune.worker.tasks.sync_router")
    sender.app.send_task("hakobune.worker.tasks.reconcile")
    sender.app.send_task("hakobune.worker.tasks.sweep_pipeline")
    sender.app.send_task("hakobune.worker.tasks.sweep_pipeline", countdown=settings.STEP_LEASE_SECONDS + 2)
