"""Submitting jobs to the worker pool and following them. Everything a user can get wrong is
checked here, before anything is enqueued, so a bad request fails at once with a clear message
instead of inside a worker an hour later."""

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from model.errors import InputError, SmapxError
from model.settings import get_settings
from worker import climatology, extension, jobs, tasks
from worker.app import app, redis_url

if TYPE_CHECKING:
    from model.product.export import ExportRequest

POLL_SECONDS = 0.25


def _store_key(out: str) -> str:
    return f"smapx:store:{out}"


def submit_extend(request: dict, requeue: bool = False) -> str:
    """Check an extension request, then queue it (queue_extension); the job id."""
    return queue_extension(extension.ExtensionJob.checked(request), requeue)


def queue_extension(job: extension.ExtensionJob, requeue: bool = False) -> str:
    """Create the job's cube (or keep it, if it already holds this request), enqueue one task
    per block not yet written, and return the job id. The same request sent while its job still
    runs returns that job instead of starting a second one; with `requeue` that job's unwritten
    blocks are queued again (their tasks may have been lost with a broker or a pool; a block
    written twice is the same bytes, counted once)."""
    jobs.ensure_reachable()
    r = jobs.client()
    with r.lock(f"smapx:lock:{job.out}", timeout=600, blocking_timeout=600):
        active = jobs.get_job(r.get(_store_key(job.out)) or "")
        running = active is not None and active["state"] not in jobs.FINAL
        if running and active["request"] != job.request:
            raise InputError(
                f"{job.out} is being written by job {active['id']}; "
                f"cancel it first (smapx job {active['id']} --cancel)"
            )
        if running and not requeue:
            return active["id"]
        blocks, done = job.prepare()
        if running:
            job_id = active["id"]
        else:
            job_id = jobs.create_job("extend", job.request, blocks_total=len(blocks))
            r.set(_store_key(job.out), job_id)
        jobs.add_blocks_done(job_id, sorted(done & {b.name for b in blocks}))
        for block in blocks:
            if block.name not in done:
                tasks.extend_block.apply_async((job_id, block.index))
    return job_id


def submit_climatology(request: dict, requeue: bool = False) -> str:
    """Queue a planned climatology request (worker.climatology.checked): stage it (or keep the
    groups already staged for the same plan), enqueue one task per window group not yet
    written, and return the job id. As for extensions, the same request while its job runs
    returns that job (with `requeue`, its unwritten groups queued again), and a cube being
    written by another job is refused."""
    jobs.ensure_reachable()
    r = jobs.client()
    store = request["cube"]
    with r.lock(f"smapx:lock:{store}", timeout=600, blocking_timeout=600):
        active = jobs.get_job(r.get(_store_key(store)) or "")
        running = active is not None and active["state"] not in jobs.FINAL
        if running and active["request"] != request:
            raise InputError(
                f"{store} is being written by job {active['id']}; "
                f"cancel it first (smapx job {active['id']} --cancel)"
            )
        if running and not requeue:
            return active["id"]
        names, done = climatology.prepare(request)
        if running:
            job_id = active["id"]
        else:
            job_id = jobs.create_job("climatology", request, blocks_total=len(names))
            r.set(_store_key(store), job_id)
        jobs.add_blocks_done(job_id, sorted(done & set(names)))
        for index, name in enumerate(names):
            if name not in done:
                tasks.climatology_group.apply_async((job_id, index))
    return job_id


def resume_job(job_id: str) -> str:
    """Run again what a job left undone; the id of the job that now does it. An extension runs
    the blocks it left unwritten: a finished job's (cancelled, failed) as a new job on the same
    cube, a stuck one's (its pool or its tasks gone) queued again under the same job. An export
    that failed, was cancelled or is stuck (its task lost) is queued again under its id."""
    job = jobs.require_job(job_id)
    if job["kind"] == "export":
        return requeue_export(job)
    if job["kind"] == "climatology":
        return submit_climatology(job["request"], requeue=True)
    if job["kind"] != "extend":
        raise InputError(
            f"job {job_id} is a {job['kind']} job; only extensions, climatologies and exports "
            "resume"
        )
    return submit_extend(job["request"], requeue=True)


def requeue_export(job: dict) -> str:
    """Queue an unfinished export again under its id (its record put back where Redis lost it).
    A stuck task that was only slow then runs twice: an export rewrites its own folder, so that
    costs time, never data."""
    job_id = job["id"]
    if job["state"] == "done":
        raise InputError(f"job {job_id} is done; its files are listed by smapx job {job_id}")
    jobs.restore_job(job_id)
    jobs.reopen_job(job_id)
    export_task(job["request"]).apply_async((job_id,))
    return job_id


def export_task(request: dict):
    """The task that writes an export-like job's files: a bulk area job's, or a subset's."""
    return tasks.area_export if "areas" in request else tasks.export


def requeue_lost_exports() -> list[str]:
    """Put back the records of exports that Redis lost (restarted without persistence) from the
    copies beside their results, and queue again those not finished: their tasks were lost
    with the records. Run by every worker's heartbeat; of workers that find the same job, the
    one that restores it queues it. The ids queued."""
    folders = [f.name for f in get_settings().jobs_dir.glob("*") if jobs.JOB_ID.match(f.name)]
    if not folders:
        return []
    with jobs.client().pipeline(transaction=False) as pipe:
        for job_id in folders:
            pipe.exists(jobs.job_key(job_id))
        known = pipe.execute()
    queued = []
    for job_id, exists in zip(folders, known, strict=True):
        job = None if exists else jobs.restore_job(job_id)
        if job is not None and job["state"] not in jobs.FINAL:
            export_task(job["request"]).apply_async((job_id,))
            queued.append(job_id)
    return queued


def submit_export(
    request: "dict | ExportRequest", cube_path: str | None = None, owner: str | None = None
) -> str:
    """Check an export request (model.product.export) against its cube and enqueue it; the job id.
    `cube_path` defaults to the first cube the settings serve; `owner` is who may see the job."""
    from model.product import cube as cubes
    from model.product.export import check_products, parse_request

    cubes_served = get_settings().cubes
    if cube_path is None and not cubes_served:
        raise InputError("no cube to export from: give one, or set SMAPX_CUBES")
    cube_path = str(cube_path or cubes_served[0])
    parsed = parse_request(request)
    check_products(cubes.open_cube(cube_path), parsed.products)
    jobs.ensure_reachable()
    job_id = jobs.create_job(
        "export", {**parsed.model_dump(mode="json"), "cube": cube_path}, owner=owner
    )
    tasks.export.apply_async((job_id,))
    return job_id


def submit_area_export(
    request: dict, cube_path: str, atlas_dir: str, owner: str | None = None
) -> str:
    """Enqueue a bulk area job the caller has planned (model.product.area_export.plan) against
    its cube; the job id. Its record is an export's, so it lists, cancels, restores and
    downloads as one; `atlas_dir` is where the worker finds the states and counties."""
    jobs.ensure_reachable()
    job_id = jobs.create_job(
        "export", {**request, "cube": cube_path, "atlas": atlas_dir}, owner=owner
    )
    tasks.area_export.apply_async((job_id,))
    return job_id


def submit_train(request: dict) -> str:
    """Check a training request ({input, out, start, end, ...TrainConfig fields}) and enqueue it."""
    from dataclasses import fields

    from model.dataset import open_input, select_period
    from model.training.train import TrainConfig, check_config

    allowed = {f.name for f in fields(TrainConfig)} | {"input", "out"}
    unknown = set(request) - allowed
    if unknown:
        raise InputError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    missing = [k for k in ("input", "out", "start", "end") if not request.get(k)]
    if missing:
        raise InputError(f"training request lacks {', '.join(missing)}")
    check_config(TrainConfig(**{k: v for k, v in request.items() if k not in ("input", "out")}))
    select_period(open_input(request["input"]), request["start"], request["end"])
    jobs.ensure_reachable()
    job_id = jobs.create_job("train", json.loads(json.dumps(request, default=str)))
    tasks.train.apply_async((job_id,))
    return job_id


def follow(job_id: str, progress: bool = True) -> dict:
    """Wait for a job to finish, with a progress bar; its final record. A failed or cancelled
    job raises SmapxError with its error."""
    job = jobs.require_job(job_id)
    total = job["blocks_total"] or 100
    with tqdm(
        total=total,
        desc=f"{job['kind']} {job_id}",
        unit="block" if job["blocks_total"] else "%",
        disable=not progress,
    ) as bar:
        while True:
            job = jobs.require_job(job_id)
            bar.n = job["blocks_done"] if job["blocks_total"] else int(job["percent"])
            bar.set_postfix_str(job["stage"] or "", refresh=False)
            bar.refresh()
            if job["state"] in jobs.FINAL:
                break
            time.sleep(POLL_SECONDS)
    if job["state"] == "failed":
        raise SmapxError(f"job {job_id} failed: {job['error']}")
    if job["state"] == "cancelled":
        raise SmapxError(f"job {job_id} was cancelled; resume it with: smapx job {job_id} --resume")
    return job


@contextmanager
def on_pool(workers: int = 0, threads: int = 0) -> Iterator[None]:
    """Inside: jobs run on `workers` local worker processes started for them (and a private
    Redis if none is configured), or with workers=0 on the running pool."""
    if not workers:
        yield
        return
    from worker.pool import local_pool

    with local_pool(workers, threads):
        yield


def _warn_without_workers(job_id: str, local_workers: int) -> None:
    """Say so when no worker listens on the running pool; workers started for the job (local)
    are still importing at first and answer soon."""
    if not local_workers and not app.control.ping(timeout=1.0):
        tqdm.write(
            f"no worker answers on {redis_url()}; job {job_id} waits for one "
            f"(start one with: smapx worker)",
            file=sys.stderr,
        )


def run_extend(request: dict, workers: int = 0, threads: int = 0, progress: bool = True) -> dict:
    """Extend on the running pool (workers=0) or on `workers` local worker processes started
    for this job (and a private Redis if none is configured); the finished job's record."""
    job = extension.ExtensionJob.checked(request)
    with on_pool(workers, threads):
        job_id = queue_extension(job)
        _warn_without_workers(job_id, workers)
        return follow(job_id, progress)


def run_climatology(
    cube: str | Path,
    base: str | None = None,
    workers: int = 0,
    threads: int = 0,
    progress: bool = True,
) -> dict:
    """Compute the cube's climatology over `base` on the pool (as run_extend: the running one,
    or `workers` local processes), one task per window group; its attributes once published."""
    request = climatology.checked(cube, base)
    with on_pool(workers, threads):
        job_id = submit_climatology(request)
        _warn_without_workers(job_id, workers)
        follow(job_id, progress)
    return request["plan"]["attrs"]


def run_extend_and_rank(
    request: dict,
    base: str | None = None,
    workers: int = 0,
    threads: int = 0,
    progress: bool = True,
) -> tuple[dict, str]:
    """An extension on the pool chained into its climatology on the same pool, as `smapx
    extend` does in one process (model.product.climatology.after_extension): the extension
    job's record and the line saying what the climatology did."""
    from model.product.climatology import after_extension

    job = extension.ExtensionJob.checked(request)
    with on_pool(workers, threads):
        job_id = queue_extension(job)
        _warn_without_workers(job_id, workers)
        record = follow(job_id, progress)
        line = after_extension(
            job.out, base, progress, recompute=lambda s, b: run_climatology(s, b, 0, 0, progress)
        )
    return record, line
