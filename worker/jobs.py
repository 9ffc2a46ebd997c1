"""Job records in Redis: what the CLI (`smapx jobs`, `smapx job ID`) and the HTTP service show
about long work, and how workers report progress and see a cancellation.

A record is a hash `smapx:job:<id>` whose fields hold JSON values:
    id, kind (extend | climatology | export | train), owner (a digest of the API key that made
    it, or null),
    request (the JSON that made the job, so it can be re-run),
    state (queued | running | done | failed | cancelled), percent, stage,
    blocks_done, blocks_total, created, started, finished, expires (ISO 8601 UTC), error, result.
Finished blocks of a job are a Redis set, so a block delivered twice is counted once.
Records expire `job_expiry_hours` after they finish. Every job is in the index of all jobs and
in its owner's, so a caller's list costs what the caller's own jobs cost.

An export job's record is also written beside its results (`<jobs_dir>/<id>/job.json`) at every
change of state, so its owner, state and expiry outlive Redis: a job whose record Redis lost
(restarted without persistence) is put back from there (`restore_job`), and only a folder whose
manifest proves it expired is deleted. A change of state and the copy it writes happen under the
job's file lock, the copy written before Redis shows the change, and a restore reads the copy
under the same lock: the two never disagree, and a cancelled job stays cancelled through a
Redis restart and the workers' restores.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import redis
from filelock import FileLock

from model.errors import InputError, SmapxError
from model.settings import get_settings
from worker.app import redis_url

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = frozenset({"done", "failed", "cancelled"})
FIELDS = (
    "id",
    "kind",
    "owner",
    "request",
    "state",
    "percent",
    "stage",
    "blocks_done",
    "blocks_total",
    "created",
    "started",
    "finished",
    "expires",
    "error",
    "result",
)
INDEX = "smapx:jobs"
MANIFEST = "job.json"
LOCKS = ".locks"
EVERYONE = object()
JOB_ID = re.compile(r"^[0-9a-f]{16}$")


def job_key(job_id: str) -> str:
    return f"smapx:job:{job_id}"


def _blocks_key(job_id: str) -> str:
    return f"smapx:job:{job_id}:blocks"


def owner_index(owner: str | None) -> str:
    """The index of one owner's jobs (`-` holds the jobs of nobody, made where keys are off)."""
    return f"{INDEX}:owner:{owner or '-'}"


@lru_cache(maxsize=8)
def _connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def client() -> redis.Redis:
    """A connection to the Redis the settings name."""
    return _connect(redis_url())


def ensure_reachable() -> None:
    """A clear error when the configured Redis does not answer."""
    try:
        client().ping()
    except redis.RedisError as exc:
        raise SmapxError(f"cannot reach Redis at {redis_url()} ({exc})") from exc


def now(timespec: str = "seconds") -> str:
    return datetime.now(UTC).isoformat(timespec=timespec)


def _encode(fields: dict) -> dict:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown job field(s): {sorted(unknown)}")
    return {k: json.dumps(v) for k, v in fields.items()}


def owner_of(api_key: str | None) -> str | None:
    """The owner a key stands for: a digest, so records never hold the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else None


def create_job(kind: str, request: dict, blocks_total: int = 0, owner: str | None = None) -> str:
    """Record a new queued job and return its id (64 random bits: unguessable)."""
    job_id = secrets.token_hex(8)
    record = {
        "id": job_id,
        "kind": kind,
        "owner": owner,
        "request": request,
        "state": "queued",
        "percent": 0.0,
        "stage": "queued",
        "blocks_done": 0,
        "blocks_total": blocks_total,
        "created": now("milliseconds"),  # orders the job indexes: jobs a second apart are common
        "started": None,
        "finished": None,
        "expires": None,
        "error": None,
        "result": None,
    }
    if kind == "export":
        manifest_path(job_id).parent.mkdir(parents=True, exist_ok=True)
    with _locked(job_id):
        with client().pipeline() as pipe:
            pipe.hset(job_key(job_id), mapping=_encode(record))
            _index(pipe, record)
            pipe.execute()
        write_manifest(record)
    return job_id


def _index(pipe, job: dict) -> None:
    score = datetime.fromisoformat(job["created"]).timestamp()
    pipe.zadd(INDEX, {job["id"]: score})
    pipe.zadd(owner_index(job.get("owner")), {job["id"]: score})


def manifest_path(job_id: str) -> Path:
    return get_settings().jobs_dir / job_id / MANIFEST


def lock_path(job_id: str) -> Path:
    """A job's lock file: beside the job folders, not in one, so a folder holds only results."""
    return get_settings().jobs_dir / LOCKS / f"{job_id}.lock"


@contextmanager
def _locked(job_id: str):
    """Held while a job's state changes in Redis and in its copy beside the results (export jobs,
    whose folder exists); a flock, so it serialises threads and processes alike."""
    if not (JOB_ID.match(job_id) and manifest_path(job_id).parent.is_dir()):
        yield
        return
    lock_path(job_id).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path(job_id)):
        yield


def write_manifest(job: dict) -> None:
    """Keep an export job's record beside its results (atomically: a reader never sees half)."""
    if job["kind"] != "export":
        return
    path = manifest_path(job["id"])
    if not path.parent.is_dir():
        return
    fd, partial = tempfile.mkstemp(prefix=f".{MANIFEST}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(job))
    os.replace(partial, path)


def read_manifest(job_id: str) -> dict | None:
    """An export job's record as written beside its results, or None where there is none."""
    if not JOB_ID.match(job_id):
        return None
    try:
        return json.loads(manifest_path(job_id).read_text())
    except (OSError, ValueError):
        return None


def expired(job: dict) -> bool:
    """True only when the record proves its job finished and its expiry has passed."""
    return bool(job.get("expires")) and datetime.fromisoformat(job["expires"]) < datetime.now(UTC)


def get_job(job_id: str) -> dict | None:
    """The record of a job, or None if there is none (never was, or expired)."""
    raw = client().hgetall(job_key(job_id))
    return {k: json.loads(v) for k, v in raw.items()} if raw else None


def state_of(job_id: str) -> str | None:
    """A job's state alone (cheap: a worker asks it between blocks), None without a record."""
    state = client().hget(job_key(job_id), "state")
    return None if state is None else json.loads(state)


def restore_job(job_id: str) -> dict | None:
    """Put back a record Redis lost from the copy beside the job's results; the record if this
    call put it back, None where Redis has one, there is no copy, or the copy proves it expired.
    Atomic: of workers restoring the same job at once, one does; and under the job's lock, so
    the copy it reads is never one a change of state is about to replace."""
    if not JOB_ID.match(job_id):
        return None
    with _locked(job_id):
        job = read_manifest(job_id)
        if job is None or expired(job):
            return None
        key = job_key(job_id)

        def apply(pipe) -> bool:
            if pipe.exists(key):
                return False
            pipe.multi()
            pipe.hset(key, mapping=_encode(job))
            _index(pipe, job)
            if job.get("expires"):
                pipe.expireat(key, datetime.fromisoformat(job["expires"]))
            return True

        return job if client().transaction(apply, key, value_from_callable=True) else None


def recorded(job_id: str) -> dict | None:
    """A job's record, put back from beside its results where Redis lost it."""
    return get_job(job_id) or restore_job(job_id) or get_job(job_id)


def require_job(job_id: str) -> dict:
    """The record of a job (from beside its results where Redis lost it, unless it expired), or
    an InputError naming the unknown id."""
    job = get_job(job_id) or read_manifest(job_id)
    if job is not None and expired(job):
        job = None
    if job is None:
        raise InputError(f"no job {job_id!r} (unknown or expired)")
    return job


def list_jobs(limit: int = 100, kind: str | None = None, owner=EVERYONE) -> list[dict]:
    """The most recent jobs of an owner (of everyone by default), newest first, read a page at
    a time from the owner's index; ids whose record expired are dropped from it."""
    r = client()
    index = INDEX if owner is EVERYONE else owner_index(owner)
    jobs, start, page = [], 0, max(10, min(limit, 200))
    while len(jobs) < limit:
        ids = r.zrevrange(index, start, start + page - 1)
        if not ids:
            break
        with r.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(job_key(job_id))
            raws = pipe.execute()
        gone = [job_id for job_id, raw in zip(ids, raws, strict=True) if not raw]
        for raw in raws:
            job = {k: json.loads(v) for k, v in raw.items()} if raw else None
            if job is not None and (kind is None or job["kind"] == kind):
                jobs.append(job)
        if gone:
            r.zrem(index, *gone)
        start += page - len(gone)
    return jobs[:limit]


def unrecorded() -> list[dict]:
    """The records, from beside their results, of the export jobs Redis has no record of
    (restarted without persistence); the folders whose record proves they expired are deleted
    on the way. One round trip to Redis for every folder, and a file read only for those."""
    root = get_settings().jobs_dir
    folders = [f.name for f in root.iterdir() if JOB_ID.match(f.name)] if root.is_dir() else []
    if not folders:
        return []
    with client().pipeline(transaction=False) as pipe:
        for job_id in folders:
            pipe.exists(job_key(job_id))
        known = pipe.execute()
    lost = []
    for job_id in (f for f, exists in zip(folders, known, strict=True) if not exists):
        job = read_manifest(job_id)
        if job is not None and expired(job):
            shutil.rmtree(root / job_id, ignore_errors=True)
            lock_path(job_id).unlink(missing_ok=True)
        elif job is not None:
            lost.append(job)
    return lost


def update_job(job_id: str, **fields) -> None:
    """Set fields of a job record (progress, stage, result...); a finished job is left alone."""
    _transition(job_id, None, set(STATES) - FINAL, **fields)


def start_job(job_id: str, stage: str = "running") -> bool:
    """Mark a queued job running (first task to start); True if it now runs, False if it is
    finished or cancelled (or a cancel came first)."""
    _change(job_id, "running", {"queued"}, started=now(), stage=stage)
    return state_of(job_id) == "running"


def finish_job(job_id: str, state: str = "done", **fields) -> bool:
    """Move a job to a final state unless it already is in one; True if this call did it."""
    if state not in FINAL:
        raise ValueError(f"{state} is not a final state")
    hours = get_settings().job_expiry_hours
    finished = datetime.now(UTC)
    expires = (finished + timedelta(hours=hours)).isoformat(timespec="seconds")
    seconds = max(1, int(hours * 3600))
    return _change(
        job_id,
        state,
        set(STATES) - FINAL,
        expire=seconds,
        finished=finished.isoformat(timespec="seconds"),
        expires=expires,
        stage=state,
        **fields,
    )


def cancel_job(job_id: str) -> dict:
    """Cancel a job: workers skip its remaining blocks and a running export stops at its next
    block. A record Redis lost is put back first, so the cancel reaches it and its copy alike.
    Returns the record as it now stands."""
    require_job(job_id)
    restore_job(job_id)
    finish_job(job_id, "cancelled")
    return require_job(job_id)


def reopen_job(job_id: str) -> bool:
    """Queue a failed or cancelled job again under its id (its expiry lifted); True if it was."""
    fields = {"percent": 0.0, "stage": "queued", "finished": None, "expires": None, "error": None}
    return _change(job_id, "queued", {"failed", "cancelled"}, expire=0, **fields)


def delete_job(job_id: str) -> bool:
    """Forget a finished job: its record, its place in the indexes and its files; True if it was
    finished (a job still queued or running is cancelled first, never deleted)."""
    with _locked(job_id):
        job = get_job(job_id) or read_manifest(job_id)
        if job is None or job["state"] not in FINAL:
            return False
        with client().pipeline() as pipe:
            pipe.delete(job_key(job_id), _blocks_key(job_id))
            pipe.zrem(INDEX, job_id)
            pipe.zrem(owner_index(job.get("owner")), job_id)
            pipe.execute()
        manifest_path(job_id).unlink(missing_ok=True)
    shutil.rmtree(manifest_path(job_id).parent, ignore_errors=True)
    lock_path(job_id).unlink(missing_ok=True)
    return True


def add_blocks_done(job_id: str, names: list[str]) -> dict:
    """Count finished blocks (each name once); the job is done when all are. Returns the record."""
    r = client()
    with r.pipeline() as pipe:
        if names:
            pipe.sadd(_blocks_key(job_id), *names)
        pipe.scard(_blocks_key(job_id))
        pipe.hget(job_key(job_id), "blocks_total")
        *_, count, total = pipe.execute()
    total = json.loads(total or "0")
    percent = 100.0 * count / total if total else 100.0
    update_job(job_id, blocks_done=count, percent=round(percent, 2))
    if count >= total:
        finish_job(job_id, "done", percent=100.0)
    return require_job(job_id)


def _change(job_id: str, to_state: str, from_states, expire: int | None = None, **fields) -> bool:
    """A change of state, in Redis and in the copy beside the results alike, under the job's
    lock: the copy first, so that once Redis shows a job finished its copy is final too (a
    reader of its folder never meets the copy in flight, and a Redis lost just then puts back
    the finished record, not a running one that would run again over its files); the old copy
    again if Redis refuses the change. `expire`: seconds the record then lives, 0 for ever,
    None as it was. True if the job was in one of from_states."""
    with _locked(job_id):
        copy = read_manifest(job_id)
        changed = None
        if copy is not None:
            record = get_job(job_id)
            if record is None or record["state"] not in from_states:
                return False
            changed = {**record, **fields, "state": to_state}
            write_manifest(changed)
        if not _transition(job_id, to_state, from_states, **fields):
            if copy is not None:
                write_manifest(copy)
            return False
        if expire is not None:
            for key in (job_key(job_id), _blocks_key(job_id)):
                if expire:
                    client().expire(key, expire)
                else:
                    client().persist(key)
        if changed is not None and (now_held := get_job(job_id)) not in (None, changed):
            write_manifest(now_held)  # progress a worker set meanwhile (not under the lock)
        return True


def _transition(job_id: str, to_state: str | None, from_states, **fields) -> bool:
    """Atomically set fields (and the state) if the job's current state is one of from_states."""
    if to_state is not None:
        fields["state"] = to_state
    key = job_key(job_id)

    def apply(pipe) -> bool:
        state = pipe.hget(key, "state")
        if state is None or json.loads(state) not in from_states:
            return False
        pipe.multi()
        pipe.hset(key, mapping=_encode(fields))
        return True

    return client().transaction(apply, key, value_from_callable=True)
