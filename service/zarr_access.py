"""Zarr access: the cubes read-only over HTTP (so `xarray.open_zarr(".../v1/zarr/<cube>")`
works) and subsets downloaded at once as a zipped Zarr store, NetCDF or CSV."""

import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from model import grid
from model.errors import OutOfRangeError
from model.product import cube as cubes
from model.product import export
from model.product.formats import FORMATS, DirectFormat
from service import problems
from service.problems import too_large
from service.series import CubeName, Products, Weight, split_products

router = APIRouter(prefix="/v1", tags=["zarr"])
MAX_DIRECT_VALUES = 20_000_000
SUBSET_PREFIX = "smapx-subset-"
STALE_SECONDS = 3600


@router.get("/zarr/{cube}/{key:path}", summary="Zarr store, read-only", response_class=Response)
@router.head("/zarr/{cube}/{key:path}", include_in_schema=False)
def zarr_key(request: Request, cube: str, key: str):
    """One key of a served cube's Zarr store (metadata or chunk); 404 where absent."""
    served = request.app.state.catalog.get(cube)
    data = cubes.read_key(served.path, key)
    if data is None:
        raise OutOfRangeError(f"no key {key!r} in cube {cube!r}")
    media = "application/json" if key.endswith(".json") else "application/octet-stream"
    return Response(data, media_type=media)


@router.get(
    "/subset",
    summary="Download a subset now",
    response_class=FileResponse,
    responses={
        200: {"content": {f.media_type: {} for f in FORMATS.values() if f.direct}},
        **problems.responses(413),
    },
)
def subset(
    request: Request,
    bbox: Annotated[str, Query(description="west,south,east,north", examples=["-104,28,-102,30"])],
    start: Annotated[date, Query(examples=["2016-01-01"])],
    end: Annotated[date, Query(examples=["2016-01-31"])],
    products: Products = "lstm",
    format: DirectFormat = "zarr",
    weight: Weight = None,
    cube: CubeName = None,
):
    """A bbox, period and products of a cube as a zipped Zarr store, NetCDF or CSV, written
    by the same code as bulk jobs; requests over 20 million values belong in a bulk job."""
    served = request.app.state.catalog.get(cube)
    req = export.parse_request(
        {
            "products": split_products(products),
            "start": start,
            "end": end,
            "bbox": grid.parse_bbox(bbox),
            "format": format,
            "weight": weight,
        }
    )
    size = export.estimate(served.dataset, req)
    if size["values"] > MAX_DIRECT_VALUES:
        return too_large(
            f"{size['values']} values; at most {MAX_DIRECT_VALUES} here, "
            "submit a bulk job (POST /v1/jobs) for more",
            MAX_DIRECT_VALUES,
        )
    folder = Path(tempfile.mkdtemp(prefix=SUBSET_PREFIX))
    try:
        path = export.export_subset(str(served.path), req.model_dump(mode="json"), folder)[0]
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    name = f"{served.name}_{start}_{end}{''.join(path.suffixes)}"
    return FileResponse(
        path,
        media_type=FORMATS[format].media_type,
        filename=name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


def sweep_stale_subsets() -> None:
    """Remove subset folders over an hour old: a process killed mid-download leaves its own."""
    cutoff = time.time() - STALE_SECONDS
    for folder in Path(tempfile.gettempdir()).glob(SUBSET_PREFIX + "*"):
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
