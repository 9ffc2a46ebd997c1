"""Bulk jobs, as NASA AppEEARS runs them: submit (an id and a size estimate at once, 413 over
the limit), poll state and percent, list the result files with sizes and sha256, download them,
cancel a job that runs or delete one that finished (its files with it). The work runs on the
Celery workers (worker.submit / worker.tasks); records live in Redis and beside the results, and
expire `job_expiry_hours` after they finish, their files with them.

Owners: where API keys are configured (SMAPX_API_KEYS), every job belongs to the key that made it
and a key lists, reads, downloads and cancels only its own jobs (another key's job is answered
404, as if it did not exist); SMAPX_ADMIN_API_KEY sees every job. Where no keys are configured
the service is open: jobs belong to nobody and everyone sees them all. Keys travel in the
X-API-Key header only. Job ids are 64 random bits. Links are relative to the API root, or built
on SMAPX_PUBLIC_URL; records never show a server path.
"""

import hmac
import json
from typing import Annotated

import redis
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError

from model.errors import OutOfRangeError
from model.product import area_export, areas, export
from model.settings import get_settings
from service import problems
from service.areas import ATLAS_DIR
from service.bodylimit import parsing
from service.catalog import cube_name
from service.numbers import Integer

router = APIRouter(prefix="/v1", tags=["jobs"], responses=problems.responses(401, 503))
WAITING = "waiting for a worker"
WAITING_HINT = "no worker listens on the job queue: bulk jobs wait until one starts (smapx worker)"
PUBLIC_FIELDS = ("id", "state", "percent", "stage", "created", "started", "finished", "expires")
ApiKey = Annotated[
    str | None, Header(description="Your API key (where the service is configured with keys)")
]


class JobRequest(export.ExportRequest):
    """An export request and, optionally, which served cube it reads."""

    cube: str | None = None


class AreaJobRequest(area_export.AreaRequest):
    """A bulk area request and, optionally, which served cube it reads."""

    cube: str | None = None


class Caller:
    """Who asks: the owner their key stands for, and whether they see every job."""

    def __init__(self, api_key: str | None):
        from worker.jobs import owner_of

        settings = get_settings()
        self.admin = bool(settings.admin_api_key) and matches(api_key, [settings.admin_api_key])
        self.open = not settings.api_keys
        if not (self.open or self.admin or matches(api_key, settings.api_keys)):
            raise HTTPException(401, "jobs need an API key: send it in the X-API-Key header")
        self.owner = None if self.open or self.admin else owner_of(api_key)

    def sees(self, job: dict) -> bool:
        return self.open or self.admin or job.get("owner") == self.owner

    def index(self, records):
        """Whose index of jobs this caller lists: everyone's, or the owner's own."""
        return records.EVERYONE if self.open or self.admin else self.owner


def matches(api_key: str | None, keys: list[str]) -> bool:
    """Whether the key is one of `keys`, compared in constant time."""
    given = (api_key or "").encode()
    return bool(api_key) and any(hmac.compare_digest(given, k.encode()) for k in keys)


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


def workers_listening() -> tuple[int | None, list[str]]:
    """(workers whose heartbeat is fresh, or None without a queue; warnings for /healthz)."""
    from worker.heartbeat import alive_workers

    try:
        workers = alive_workers()
    except redis.RedisError as exc:
        return None, [f"the job queue is unavailable ({exc}): bulk jobs answer 503"]
    if not workers:
        return 0, [WAITING_HINT]
    return workers, []


def find_job(records, job_id: str) -> dict | None:
    """A job's record from Redis, else from beside its results (Redis lost it), unless expired."""
    if not records.JOB_ID.match(job_id):
        return None
    job = records.get_job(job_id) or records.read_manifest(job_id)
    return None if job is None or records.expired(job) else job


def job_record(job_id: str, caller: Caller) -> dict:
    records, _ = worker_layer()
    job = find_job(records, job_id)
    if job is None or job["kind"] != "export" or not caller.sees(job):
        raise OutOfRangeError(f"no job {job_id!r} (unknown, expired, or not yours)")
    return job


def link(path: str) -> str:
    """A link to an API path: on the public URL when one is configured, else relative."""
    base = (get_settings().public_url or "").rstrip("/")
    return f"{base}{path}"


def public(job: dict, listed: bool = False, idle: bool | None = None) -> dict:
    """What a user sees of a job record: no owner, no server path (the cube by its name). In a
    list, a points request shows how many points it has, not all of them (the job's own
    record has them), so a list stays small however large its jobs are. `idle`: whether no
    worker listens, where the caller already knows."""
    out = {k: job.get(k) for k in PUBLIC_FIELDS}
    out["error"] = job.get("error")
    queued = job.get("state") == "queued"
    if queued and (idle if idle is not None else workers_listening()[0] == 0):
        out["stage"], out["hint"] = WAITING, WAITING_HINT
    request = dict(job.get("request") or {})
    request.pop("atlas", None)  # a server path
    if "cube" in request:
        request["cube"] = cube_name(request["cube"])
    for many in ("points", "areas"):
        if listed and request.get(many) is not None:
            request[many] = len(request[many])
    out["request"] = request
    out["links"] = {
        "self": link(f"/v1/jobs/{job['id']}"),
        "files": link(f"/v1/jobs/{job['id']}/files"),
    }
    return out


def check_size(served, req: export.ExportRequest) -> dict:
    """The request's estimate; 413 over the point, value or byte limits."""
    settings = get_settings()
    if req.points is not None and len(req.points) > settings.max_job_points:
        raise problems.TooLarge(
            f"points: {len(req.points)} points; at most {settings.max_job_points} per job",
            settings.max_job_points,
        )
    size = export.estimate(served.dataset, req)
    if size["values"] > settings.max_job_values:
        raise problems.TooLarge(
            f"the job holds {size['values']} values (days x cells x products); "
            f"the limit is {settings.max_job_values}",
            settings.max_job_values,
        )
    if size["bytes"] > settings.max_job_bytes:
        raise problems.TooLarge(
            f"the job's {req.format} files would take about {size['bytes']} bytes; "
            f"the limit is {settings.max_job_bytes}",
            settings.max_job_bytes,
        )
    return size


@router.post(
    "/jobs",
    status_code=202,
    summary="Submit a bulk export or area job",
    responses=problems.responses(413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            JobRequest.model_json_schema(),
                            AreaJobRequest.model_json_schema(),
                        ]
                    }
                }
            },
        }
    },
)
async def submit_job(request: Request, x_api_key: ApiKey = None):
    """An export: points (`[[lat, lon], ...]`) or a bbox (`[west, south, east, north]`), a
    period, products (fused included) and a format (zarr, netcdf, csv, geotiff). Or statistics
    over many areas (`areas`: `state:FIPS`, `county:FIPS`, GeoJSON polygons), as the area routes
    answer them, per day or week, into one long CSV (area, date, product, mean, D0..D4) and/or
    JSON, with progress per area. Answers at once with the job id and an estimate of its size;
    everything, every area included, is checked before anything is queued."""
    caller = Caller(x_api_key)
    body = await request.body()
    return await run_in_threadpool(accept_job, request.app.state.catalog, body, caller)


def parse_job(body: bytes) -> JobRequest | AreaJobRequest:
    """The request from its JSON text, parsed off the event loop (a 2 MB body of points takes
    ~50 ms, holding the interpreter lock); an invalid one is 422 naming the field, as for any
    other parameter. A body with more arrays than a job may have points (plus the point list,
    bbox and products) is 413 before any parsing: counting them takes 2 ms. A body with
    `areas` is an area job's, bounded by the body limit and by its areas' vertices."""
    model = AreaJobRequest if is_area_job(body) else JobRequest
    limit = get_settings().max_job_points
    arrays = body.count(b"[")
    if model is JobRequest and arrays > limit + 3:
        raise problems.TooLarge(
            f"points: the body holds {arrays} arrays; a job has at most {limit} points", limit
        )
    try:
        with parsing(body):
            return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


def is_area_job(body: bytes) -> bool:
    """Whether a job's JSON body is a bulk area request: an object with `areas`."""
    if b'"areas"' not in body:
        return False
    with parsing(body):
        try:
            return "areas" in json.loads(body)
        except (ValueError, RecursionError, TypeError):
            return False


def accept_job(catalog, body: bytes, caller: Caller) -> JSONResponse:
    """Check a job request against its cube and the limits, then queue it; the 202 answer."""
    req = parse_job(body)  # a JobRequest is an ExportRequest: checked once, passed on as it is
    if isinstance(req, AreaJobRequest):
        return accept_area_job(catalog, req, caller)
    served = catalog.get(req.cube)
    size = check_size(served, req)
    records, submit = worker_layer()
    records.unrecorded()  # sweeps the folders of expired jobs
    job_id = submit.submit_export(req, str(served.path), caller.owner)
    job = job_record(job_id, caller)
    return JSONResponse({**public(job), "estimate": size}, status_code=202)


def accept_area_job(catalog, req: AreaJobRequest, caller: Caller) -> JSONResponse:
    """Plan a bulk area job against its cube (every area resolved and covering cells; 4xx
    naming the first bad one) and the limits, then queue it; the 202 answer."""
    served = catalog.get(req.cube)
    settings = get_settings()
    if len(req.areas) > settings.max_job_points:
        raise problems.TooLarge(
            f"areas: {len(req.areas)} areas; at most {settings.max_job_points} per job",
            settings.max_job_points,
        )
    request = req.model_dump(mode="json", exclude={"cube"})
    try:
        plan = area_export.plan(served.reader, request, ATLAS_DIR, settings.area_max_vertices)
    except areas.TooManyVertices as exc:
        raise problems.TooLarge(str(exc), settings.area_max_vertices) from None
    except OutOfRangeError as exc:
        raise OutOfRangeError(str(exc), served.extent) from None
    if plan.cell_days > settings.max_job_values:
        raise problems.TooLarge(
            f"the job reads {plan.cell_days} cell-days (cells x days x products over its "
            f"areas); the limit is {settings.max_job_values}",
            settings.max_job_values,
        )
    records, submit = worker_layer()
    records.unrecorded()
    job_id = submit.submit_area_export(request, str(served.path), str(ATLAS_DIR), caller.owner)
    estimate = {
        "areas": len(plan.areas),
        "cells": sum(int(a.cells.weight.size) for a in plan.areas),
        "days": plan.days.stop - plan.days.start,
        "products": len(req.products),
        "values": plan.cell_days,
    }
    return JSONResponse({**public(job_record(job_id, caller)), "estimate": estimate}, 202)


@router.get("/jobs", summary="Your recent bulk jobs")
def list_all(limit: Annotated[Integer, Query(ge=1, le=1000)] = 100, x_api_key: ApiKey = None):
    """Newest first: the caller's own jobs (every job for the admin key, or where keys are off),
    including those whose record only survives beside their results. Read from the caller's
    own index: other keys' jobs cost nothing (on a worker thread, off the event loop)."""
    caller = Caller(x_api_key)
    records, _ = worker_layer()
    lost = records.unrecorded()  # the jobs Redis lost, expired folders swept on the way
    listed = records.list_jobs(limit, kind="export", owner=caller.index(records))
    listed += [j for j in lost if j["kind"] == "export" and caller.sees(j)]
    listed.sort(key=lambda j: j["created"], reverse=True)
    idle = workers_listening()[0] == 0
    return {"jobs": [public(j, listed=True, idle=idle) for j in listed[:limit]]}


@router.get("/jobs/{job_id}", summary="State and percent of a job")
def status(job_id: str, x_api_key: ApiKey = None):
    return public(job_record(job_id, Caller(x_api_key)))


@router.delete("/jobs/{job_id}", summary="Cancel a job, or delete a finished one")
def cancel(job_id: str, x_api_key: ApiKey = None):
    """A queued job never starts and a running export stops within seconds (the answer: the
    job, `cancelled`). A finished job (done, failed or cancelled) is deleted with its files:
    the answer says so, and the job is 404 from then on."""
    job = job_record(job_id, Caller(x_api_key))
    records, _ = worker_layer()
    if job["state"] in records.FINAL and records.delete_job(job_id):
        return {
            "id": job_id,
            "state": "deleted",
            "detail": f"job {job_id} was {job['state']}; its record and files are deleted",
        }
    return public(records.cancel_job(job_id))


@router.get(
    "/jobs/{job_id}/files",
    summary="Result files with sizes and sha256",
    responses=problems.responses(409),
)
def files(job_id: str, x_api_key: ApiKey = None):
    job = job_record(job_id, Caller(x_api_key))
    if job["state"] != "done":
        raise HTTPException(
            409,
            f"job {job_id} is {job['state']} ({job['percent']}%); files are listed once it is done",
        )
    return {
        "id": job_id,
        "request": public(job)["request"],
        "files": [
            {**f, "href": link(f"/v1/jobs/{job_id}/files/{f['name']}")} for f in job["result"]
        ],
    }


@router.get(
    "/jobs/{job_id}/files/{name}", summary="Download one result file", response_class=FileResponse
)
def download(job_id: str, name: str, x_api_key: ApiKey = None):
    """Streams the file (ranges supported)."""
    job = job_record(job_id, Caller(x_api_key))
    names = {f["name"] for f in (job["result"] or [])} if job["state"] == "done" else set()
    path = get_settings().jobs_dir / job_id / name
    if name not in names or not path.is_file():
        raise OutOfRangeError(f"job {job_id} has no file {name!r}")
    return FileResponse(path, filename=name)
