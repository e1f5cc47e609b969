import os

from celery import Celery
from celery.signals import celeryd_after_setup, task_revoked, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")

app = Celery("hakobune")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["hakobune.worker"])

# After a (re)start, one reconcile for the whole platform, not one per worker
# process: the worker that does housekeeping sends it, at most once a minute.
RECONCILE_AT_START_SECONDS = 60


def _consumes(consumer, queue_name: str) -> bool:
    return queue_name in {queue.name for queue in consumer.app.amqp.queues.consume_from.values()}


@celeryd_after_setup.connect
def take_this_hosts_steps(sender, instance, **kwargs):
    """A worker that builds also takes the steps of the builds its host
    fetched (<prefix>.host.<WORKER_HOST>): they read the source unpacked here."""
    from hakobune.platform import queue

    if _consumes(instance, queue.queue_of(queue.BUILDS)):
        instance.app.amqp.queues.select_add(queue.host_queue(queue.this_host()))


@worker_ready.connect
def reconcile_when_ready(sender, **kwargs):
    """After a restart of the workers (or of dockerd, or of the host) route and
    bring every service back as the database wants it, at once (once, from
    the worker that does housekeeping); and resume the pipeline's steps whose
    worker died: now, and again once the leases of steps this worker ran
    before it restarted have run out."""
    from django.conf import settings

    from hakobune.platform import queue
    from hakobune.platform.locks import redis_client

    queue.enqueue("sweep_pipeline")
    queue.enqueue("sweep_pipeline", countdown=settings.STEP_LEASE_SECONDS + 2)
    if not _consumes(sender, queue.queue_of(queue.HOUSEKEEPING)):
        return
    if redis_client().set(f"hakobune:{queue.prefix()}:reconcile-at-start", "1", nx=True,
                          ex=RECONCILE_AT_START_SECONDS):
        # The routes first: they need neither the firewall nor the runtime's
        # repair, which may wait for a host lock.
        queue.enqueue("sync_router")
        queue.enqueue("reconcile")


@task_revoked.connect
def count_stale_collections(sender=None, expired=False, **kwargs):
    """A metrics collection that waited in the queue past its period is
    dropped by the worker; it is counted with the skipped ones."""
    if expired and getattr(sender, "name", "").endswith(".collect_metrics"):
        from hakobune.platform.observability import collectors

        collectors.count_skipped("it waited in the queue past its period")
