"""The Celery app: Redis broker and result backend from settings (SMAPX_REDIS_URL).

Start a worker with `smapx worker` (or `celery -A worker.app worker`). Tasks are acknowledged
only after they finish (acks_late) and a worker takes one task at a time, so a worker that dies
mid-block leaves its block in Redis to be delivered to another worker: at once when a pool child
dies, within a minute when the whole worker process vanishes (its heartbeats stop, and the task
ages past `task_visibility_timeout`; see worker.heartbeat).
"""

from celery import Celery

from model.settings import get_settings

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
QUEUE = "smapx"


def redis_url() -> str:
    """The configured Redis, or the conventional local one."""
    return get_settings().redis_url or DEFAULT_REDIS_URL


def configure(url: str | None = None) -> None:
    """(Re)point the app at a Redis; the embedded pool calls it once it has started one."""
    url = url or redis_url()
    visibility = get_settings().task_visibility_timeout
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_transport_options={
            "visibility_timeout": visibility,
            "unacked_restore_interval": max(1, min(10, visibility // 4)),
            "unacked_restore_throttle": 1,
        },
    )
    app._pool = None
    app.amqp._producer_pool = None


app = Celery("smapx", include=["worker.tasks", "worker.heartbeat"])
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_cancel_long_running_tasks_on_connection_loss=True,
)
configure()
