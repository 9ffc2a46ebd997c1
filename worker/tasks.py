"""Celery tasks: thin wrappers that call model/ and report to the job record.

A task that raises is retried with exponential backoff; a user error (SmapxError) is not, since
running it again gives the same answer. When the retries are spent the job is marked failed
with the error text. Every task first checks its job: a cancelled job's tasks do nothing.
"""

import hashlib
import logging
from pathlib import Path

import redis
from celery import Task

from model.errors import SmapxError
from model.settings import get_settings
from worker import climatology, extension, jobs
from worker.app import app

RETRY = {
    "autoretry_for": (Exception,),
    "dont_autoretry_for": (SmapxError,),
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "max_retries": get_settings().task_max_retries,
}
log = logging.getLogger(__name__)


class Cancelled(SmapxError):
    """The job was cancelled while its task ran: stop before writing more."""


class JobTask(Task):
    """A task whose first argument is a job id: a final failure fails the job."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        jobs.finish_job(args[0], "failed", error=f"{type(exc).__name__}: {exc}")


@app.task(base=JobTask, name="smapx.extend_block", **RETRY)
def extend_block(job_id: str, index: int) -> None:
    """Compute and write block `index` of an extension job's cube."""
    job = jobs.get_job(job_id)
    if job is None or not jobs.start_job(job_id, "extending"):
        return
    jobs.add_blocks_done(job_id, [extension.run_block(job["request"], index)])


@app.task(base=JobTask, name="smapx.climatology_group", **RETRY)
def climatology_group(job_id: str, index: int) -> None:
    """Rank and write window group `index` of a climatology job (worker.climatology)."""
    job = jobs.get_job(job_id)
    if job is None or not jobs.start_job(job_id, "ranking"):
        return
    jobs.add_blocks_done(job_id, [climatology.run_group(job["request"], index)])


@app.task(base=JobTask, name="smapx.export", **RETRY)
def export(job_id: str) -> None:
    """Write a cube subset (model.product.export) and record its files with sizes and checksums.
    Between two blocks the export looks at its job: cancelled, deleted or finished by another
    run, it stops there. A record that Redis loses while the export runs is put back from
    beside the results, and a progress report that cannot reach Redis is skipped: neither
    stops the export."""
    from model.product.export import export_subset

    def write(request: dict, out_dir: Path, progress) -> list:
        return export_subset(request.pop("cube"), request, out_dir, progress)

    _run_export(job_id, write)


@app.task(base=JobTask, name="smapx.area_export", **RETRY)
def area_export(job_id: str) -> None:
    """Write a bulk area job's statistics (model.product.area_export), a file per format, with
    progress per area and the same stops and restores as an export."""
    from model.product.area_export import export_areas

    def write(request: dict, out_dir: Path, progress) -> list:
        cube_path, atlas = request.pop("cube"), Path(request.pop("atlas"))
        limit = get_settings().area_max_vertices
        return export_areas(cube_path, atlas, request, out_dir, limit, progress)

    _run_export(job_id, write)


def _run_export(job_id: str, write) -> None:
    """Run an export-like job: `write(request, out_dir, progress)` writes its files, told the
    percent between two blocks; a cancelled, deleted or finished job stops it there."""
    job = jobs.recorded(job_id)
    if job is None or not jobs.start_job(job_id, "reading"):
        return

    def progress(percent: float, stage: str) -> None:
        try:
            state = jobs.state_of(job_id) or (jobs.recorded(job_id) or {}).get("state")
            if state == "running":
                jobs.update_job(job_id, percent=round(float(percent), 2), stage=stage)
        except redis.RedisError as exc:
            log.warning("job %s: progress not recorded (%s)", job_id, exc)
            return
        if state != "running":
            raise Cancelled(f"job {job_id} is {state or 'gone'}: its export stops")

    try:
        files = write(dict(job["request"]), get_settings().jobs_dir / job_id, progress)
    except Cancelled:
        return
    jobs.recorded(job_id)
    jobs.finish_job(job_id, "done", percent=100.0, result=[_describe(Path(f)) for f in files])


@app.task(base=JobTask, name="smapx.train", **RETRY)
def train(job_id: str) -> None:
    """Train a checkpoint from an input dataset (model.training.train) and save it."""
    from model.dataset import open_input
    from model.training import checkpoint
    from model.training.train import TrainConfig
    from model.training.train import train as run_training

    job = jobs.get_job(job_id)
    if job is None or not jobs.start_job(job_id, "training"):
        return
    request = dict(job["request"])
    inputs, out = open_input(request.pop("input")), request.pop("out")
    ckpt, log = run_training(
        inputs,
        TrainConfig(**request),
        progress=False,
        report=lambda stage, fraction: jobs.update_job(
            job_id, stage=stage, percent=round(100 * fraction, 1)
        ),
    )
    checkpoint.save(out, ckpt, log)
    jobs.finish_job(
        job_id, "done", percent=100.0, result={"checkpoint": out, "validation": ckpt.validation}
    )


def _describe(path: Path) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"name": path.name, "size": path.stat().st_size, "sha256": digest.hexdigest()}
