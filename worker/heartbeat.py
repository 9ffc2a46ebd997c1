"""Heartbeats that let the broker redeliver a dead worker's task within a minute.

With Redis as broker, a task taken but not yet acknowledged sits in the `unacked_index` sorted
set, scored with the time it was delivered; any live worker puts back those older than the
visibility timeout. A long timeout (Celery's default is an hour) leaves a dead worker's task stuck
that long; a short one alone would hand a long, healthy task to a second worker. So each worker
process refreshes the score of every task it holds every quarter of the timeout: a held task
never looks old, and a task whose worker died (SIGKILL, power, lost host) ages past the short
timeout (SMAPX_TASK_VISIBILITY_TIMEOUT, 20 s) and is delivered again, within a minute in all.
Tasks are idempotent (a block writes its own region, an export rewrites its folder), so a
delivery twice costs time, never data.

A pool that sees its own worker process exit (worker.pool) need not wait that long: each process
keeps the tags it holds under its name (`smapx:held:<hostname>`, from receipt and at every
beat), and `held.release` hands them back to the next sweep of the visibility check.

The same beat notices a Redis that restarted without persistence: an export's record kept
beside its results but gone from Redis is put back, and queued again if it had not finished
(worker.submit.requeue_lost_exports).
"""

import logging
import os
import threading
import time

import redis
from celery import signals
from celery.worker import state

from model.settings import get_settings
from worker import held, jobs

WORKER_KEY = held.WORKER_KEY
log = logging.getLogger(__name__)
_stopping = threading.Event()
_beating: list[str] = []  # the hostname this process beats for, once it has started


def interval() -> float:
    return max(1.0, get_settings().task_visibility_timeout / 4)


def held_tags() -> list[str]:
    """Delivery tags of the messages this worker process holds (reserved, scheduled, running)."""
    requests = [*state.reserved_requests, *state.active_requests, *state.scheduled_requests]
    return [r.message.delivery_tag for r in requests if r.message is not None]


def lifetime() -> int:
    """Seconds a worker's beat (its key, its held tags) outlives it: three intervals, shorter
    than the visibility timeout, so a dead worker's held tags are gone before another worker
    can have been handed them again."""
    return max(2, int(3 * interval()))


def beat(hostname: str) -> None:
    """Say this worker lives, mark every message it holds as just delivered (only those still
    unacknowledged), and record which they are."""
    tags, now = held_tags(), time.time()
    pipe = jobs.client().pipeline()
    pipe.set(WORKER_KEY + hostname, now, ex=lifetime())
    if tags:
        pipe.zadd(held.UNACKED_INDEX, {tag: now for tag in tags}, xx=True)
    held.record(pipe, hostname, tags, lifetime())
    pipe.execute()


@signals.task_received.connect
def hold(request=None, **_) -> None:
    """Record a message as this worker's the moment it arrives, not at the next beat, so a
    worker killed seconds after taking a task still has it released at once."""
    if not _beating or request is None or request.message is None:
        return
    try:
        held.add(_beating[0], request.message.delivery_tag, lifetime())
    except redis.RedisError as exc:
        log.warning("could not record a received task: %s", exc)


def run(hostname: str) -> None:
    """Beat for the life of the process, and at each beat queue again the exports whose records
    (and tasks) a Redis restarted without persistence lost; a failed beat is tried at the next."""
    from worker.submit import requeue_lost_exports

    while not _stopping.is_set():
        try:
            beat(hostname)
            for job_id in requeue_lost_exports():
                log.warning("job %s: Redis had lost it; put back from disk and queued", job_id)
        except (redis.RedisError, RuntimeError) as exc:  # RuntimeError: a set changed mid-copy
            log.warning("heartbeat skipped: %s", exc)
        _stopping.wait(interval())


def alive_workers() -> int:
    """How many workers beat within the last three intervals."""
    return sum(1 for _ in jobs.client().scan_iter(WORKER_KEY + "*", count=1000))


@signals.worker_ready.connect
def start(sender=None, **_) -> None:
    """Beat from a daemon thread of the worker's main process: it holds the messages, and the
    thread beats on while the main thread runs a task (solo pool) or waits on children."""
    hostname = getattr(sender, "hostname", None) or f"pid{os.getpid()}"
    _beating.append(hostname)
    threading.Thread(target=run, args=(hostname,), name="smapx-heartbeat", daemon=True).start()


@signals.worker_shutting_down.connect
@signals.worker_shutdown.connect
def stop(**_) -> None:
    """A worker that stops says so at once (/healthz stops counting it) when its shutdown
    begins and again when it ends; a killed one ages out after three intervals."""
    _stopping.set()
    for hostname in _beating:
        try:
            jobs.client().delete(WORKER_KEY + hostname, held.HELD_KEY + hostname)
        except redis.RedisError as exc:
            log.warning("could not say this worker stopped: %s", exc)
