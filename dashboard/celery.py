import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("keymeter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs):
    # Like Django does around a request: drop connections that broke or aged out,
    # so one database restart doesn't fail every later task of a worker.
    from django.db import close_old_connections, connection

    task = kwargs.get("task")
    # An eager task runs inside its caller's transaction: leave that connection alone.
    if (task is not None and task.request.is_eager) or connection.in_atomic_block:
        return
    close_old_connections()
