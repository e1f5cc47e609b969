import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")

app = Celery("hakobune")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["hakobune.worker"])
