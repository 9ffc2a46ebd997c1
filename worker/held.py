"""The messages each worker process holds, recorded in Redis under its name (worker.heartbeat
writes the record), so a pool that sees one of its workers exit hands them back at once instead of
waiting out the broker's visibility timeout."""

from worker import jobs

UNACKED_INDEX = "unacked_index"  # kombu's: delivery tag -> time delivered, of unacked messages
HELD_KEY = "smapx:held:"
WORKER_KEY = "smapx:worker:"


def record(pipe, hostname: str, tags: list[str], seconds: int) -> None:
    """On a pipeline: the tags a worker holds now, replacing its last record, kept `seconds`."""
    pipe.delete(HELD_KEY + hostname)
    if tags:
        pipe.sadd(HELD_KEY + hostname, *tags)
        pipe.expire(HELD_KEY + hostname, seconds)


def add(hostname: str, tag: str, seconds: int) -> None:
    """One more tag a worker holds, from the moment it arrives."""
    jobs.client().pipeline().sadd(HELD_KEY + hostname, tag).expire(
        HELD_KEY + hostname, seconds
    ).execute()


def release(hostname: str) -> int:
    """Hand back the messages a worker process that has exited held at its last beat: their
    delivery time goes to the epoch, so the next sweep of a live worker (every quarter of the
    visibility timeout) delivers them again instead of waiting the timeout out. Only for a
    process seen exiting (a pool's own child), and only while its record lives (three beats,
    worker.heartbeat.lifetime: less than the timeout), so no message another worker was
    handed since is touched. Returns how many."""
    r = jobs.client()
    tags = r.smembers(HELD_KEY + hostname)
    handed = r.zadd(UNACKED_INDEX, dict.fromkeys(tags, 0), xx=True, ch=True) if tags else 0
    r.delete(HELD_KEY + hostname, WORKER_KEY + hostname)
    return handed
