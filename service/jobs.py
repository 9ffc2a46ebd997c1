"""Bulk jobs, as NASA AppEEARS runs them: submit (an id and a size estimate at once, 413 over
the limit), poll state and percent, list the result files with sizes and sha256, download them.
The work runs on the Celery workers (worker.submit / worker.tasks); records live in Redis and
expire `job_expiry_hours` after they finish, their files with them."""

import re
import shutil
from datetime import datetime, timedelta
from typing import Annotated

import redis
from fastapi import APIRouter, Body, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from model.errors import OutOfRangeError
from model.product import export
from model.settings import get_settings
from service.problems import too_large

router = APIRouter(prefix="/v1", tags=["jobs"])
JOB_ID = re.compile(r"^[0-9a-f]{16}$")


class JobRequest(export.ExportRequest):
    """An export request and, optionally, which served cube it reads."""

    cube: str | None = None


def check_key(header_key: str | None, query_key: str | None) -> None:
    keys = get_settings().api_keys
    if keys and (header_key or query_key) not in keys:
        raise HTTPException(401, "job submission needs an API key: header X-API-Key")


def worker_layer():
    """The worker modules, or 503 when Redis does not answer (imported late: the service runs
    without a queue for everything but jobs)."""
    from worker import jobs as records
    from worker import submit

    try:
        records.client().ping()
    except redis.RedisError as exc:
        raise HTTPException(503, f"the job queue is unavailable: {exc}") from None
    return records, submit


def sweep_expired(records) -> None:
    """Delete the result folders of jobs whose records Redis has expired, so results leave the
    disk with their records."""
    root = get_settings().jobs_dir
    if not root.is_dir():
        return
    for folder in root.iterdir():
        if folder.is_dir() and JOB_ID.match(folder.name) and records.get_job(folder.name) is None:
            shutil.rmtree(folder, ignore_errors=True)


def job_record(job_id: str) -> dict:
    records, _ = worker_layer()
    job = records.get_job(job_id)
    if job is None or job["kind"] != "export":
        raise OutOfRangeError(f"no job {job_id!r} (unknown or expired)")
    return job


def public(job: dict, base: str) -> dict:
    """What a user sees of a job record."""
    expires = None
    if job.get("finished"):
        hours = get_settings().job_expiry_hours
        expires = (datetime.fromisoformat(job["finished"]) + timedelta(hours=hours)).isoformat()
    out = {
        k: job.get(k)
        for k in (
            "id",
            "state",
            "percent",
            "stage",
            "created",
            "started",
            "finished",
            "error",
            "request",
        )
    }
    out["expires"] = expires
    out["links"] = {
        "self": f"{base}/v1/jobs/{job['id']}",
        "files": f"{base}/v1/jobs/{job['id']}/files",
    }
    return out


@router.post(
    "/jobs",
    status_code=202,
    summary="Submit a bulk export job",
    responses={
        401: {"description": "API key needed"},
        413: {"description": "request over the size limit"},
    },
)
def submit_job(
    request: Request,
    body: Annotated[JobRequest, Body()],
    x_api_key: Annotated[str | None, Header()] = None,
    api_key: Annotated[str | None, Query(include_in_schema=False)] = None,
):
    """Points or a bbox, a period, products (fused included) and a format (zarr, netcdf, csv,
    geotiff). Answers at once with the job id and an estimate of its size."""
    check_key(x_api_key, api_key)
    served = request.app.state.catalog.get(body.cube)
    req = export.ExportRequest.model_validate(body.model_dump(exclude={"cube"}))
    size = export.estimate(served.dataset, req)
    limit = get_settings().max_job_values
    if size["values"] > limit:
        return too_large(
            f"the job holds {size['values']} values (days x cells x products); "
            f"the limit is {limit}",
            limit,
        )
    records, submit = worker_layer()
    sweep_expired(records)
    job_id = submit.submit_export(req.model_dump(mode="json"), str(served.path))
    base = str(request.base_url).rstrip("/")
    job = job_record(job_id)
    return JSONResponse({**public(job, base), "estimate": size}, status_code=202)


@router.get("/jobs", summary="Recent bulk jobs")
def list_all(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100):
    records, _ = worker_layer()
    sweep_expired(records)
    base = str(request.base_url).rstrip("/")
    return {"jobs": [public(j, base) for j in records.list_jobs(limit, kind="export")]}


@router.get("/jobs/{job_id}", summary="State and percent of a job")
def status(request: Request, job_id: str):
    return public(job_record(job_id), str(request.base_url).rstrip("/"))


@router.delete("/jobs/{job_id}", summary="Cancel a job")
def cancel(request: Request, job_id: str, x_api_key: Annotated[str | None, Header()] = None):
    check_key(x_api_key, None)
    job_record(job_id)
    records, _ = worker_layer()
    return public(records.cancel_job(job_id), str(request.base_url).rstrip("/"))


@router.get("/jobs/{job_id}/files", summary="Result files with sizes and sha256")
def files(request: Request, job_id: str):
    job = job_record(job_id)
    if job["state"] != "done":
        raise HTTPException(
            409,
            f"job {job_id} is {job['state']} ({job['percent']}%); files are listed once it is done",
        )
    base = str(request.base_url).rstrip("/")
    return {
        "id": job_id,
        "request": job["request"],
        "files": [
            {**f, "href": f"{base}/v1/jobs/{job_id}/files/{f['name']}"} for f in job["result"]
        ],
    }


@router.get(
    "/jobs/{job_id}/files/{name}", summary="Download one result file", response_class=FileResponse
)
def download(job_id: str, name: str):
    """Streams the file (ranges supported)."""
    job = job_record(job_id)
    names = {f["name"] for f in (job["result"] or [])} if job["state"] == "done" else set()
    path = get_settings().jobs_dir / job_id / name
    if name not in names or not path.is_file():
        raise OutOfRangeError(f"job {job_id} has no file {name!r}")
    return FileResponse(path, filename=name)
