"""Area statistics: per day, the area-weighted mean of each product over a US state, a county
(FIPS codes, the US Census atlas bundled with the web map) or a posted GeoJSON polygon, and for a
percentile product the cumulative share of the area in each drought class (D0..D4), as JSON or
CSV. The science is model.product.areas'; this module validates, gathers the cells' codes and
encodes. An area is bounded twice: by its vertex count and by the cell-days it reads."""

import json
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from model.errors import InputError, OutOfRangeError
from model.product import areas, kinds
from model.product import cube as cubes
from model.settings import get_settings
from service import problems, weekly
from service.bodylimit import parsing
from service.catalog import ServedCube
from service.problems import too_large
from service.series import (
    CSV_TYPE,
    JSON_TYPE,
    SeriesParams,
    SeriesQuery,
    clip_headers,
    clipped,
    csv_cells,
    product_codes,
    split_products,
)

router = APIRouter(prefix="/v1/areas", tags=["areas"])
ATLAS_DIR = Path(__file__).parent / "static" / "vendor"
CHUNK_VALUES = 4_000_000  # cell-days decoded at once: bounds a request's memory to tens of MB
POLYGON_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/geo+json": {
                "example": {
                    "type": "Polygon",
                    "coordinates": [
                        [[-97.5, 38.0], [-96.5, 38.0], [-96.5, 39.0], [-97.5, 39.0], [-97.5, 38.0]]
                    ],
                }
            }
        },
    }
}


def area_series(
    served: ServedCube, area: dict, geometry, query: SeriesQuery
) -> tuple[slice, list[str], dict, dict]:
    """(time slice, dates, area description, {product: {statistic: float64 values}}) of an
    area, per day or per week (Wednesday..Tuesday)."""
    names = served.check_products(split_products(query.products))
    times = served.period(query.start, query.end)
    reader = served.reader
    cells = areas.cell_weights(geometry, reader.row0, reader.col0, reader.mask, reader.grid)
    if cells.weight.size == 0:
        raise OutOfRangeError(
            f"area: {area['id']} covers no cell of cube {served.name}", served.extent
        )
    weeks = weekly.weeks_of(served, times) if query.period == "week" else None
    check_size(served, cells, times if weeks is None else weeks.days, names, weeks is not None)
    area = {
        **area,
        "area_km2": round(areas.to_ease(geometry).area / 1e6, 1),
        "covered_km2": round(cells.area_km2, 1),  # of the cube's region cells
        "cells": int(cells.weight.size),
    }
    if weeks is None:
        stats = {p: product_statistics(served, p, cells, times, query.weight) for p in names}
        return times, served.dates[times], area, stats
    stats = {
        p: statistics(
            weekly.weekly_codes(product_codes, served, p, cells.iy, cells.ix, weeks, query.weight),
            p,
            cells,
        )
        for p in names
    }
    return times, weeks.dates, area, stats


def check_size(served, cells, days: slice, names: list[str], week: bool) -> None:
    """TooLarge (413) when an area would read more cell-days than allowed; a weekly percentile
    reads its source's whole record."""
    record = len(served.dates)
    n_days = sum(
        record if week and kinds.is_percentile(p) else days.stop - days.start for p in names
    )
    limit = get_settings().area_max_cell_days
    if cells.weight.size * n_days > limit:
        raise problems.TooLarge(
            f"area: {cells.weight.size} cells x {n_days} days read for {len(names)} products "
            f"is over {limit} cell-days; ask for a shorter period or fewer products",
            limit,
        )


def product_statistics(
    served: ServedCube, product: str, cells: areas.CellWeights, times: slice, weight
) -> dict[str, np.ndarray]:
    """The daily mean (and class shares of a percentile) of a product, a chunk of days at a
    time."""
    step = max(1, CHUNK_VALUES // cells.weight.size)
    parts = []
    for first in range(times.start, times.stop, step):
        chunk = slice(first, min(first + step, times.stop))
        codes = weekly.read(product_codes, served, product, cells.iy, cells.ix, chunk, weight)
        parts.append(statistics(codes, product, cells))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def statistics(codes: np.ndarray, product: str, cells: areas.CellWeights) -> dict:
    """The area mean of (cells, days) codes, and a percentile's cumulative class shares."""
    values = decode(codes, kinds.kind_of(product).scale)
    stats = {"mean": areas.weighted_mean(values, cells.weight)}
    if kinds.kind_of(product) is kinds.PERCENTILE:
        stats.update(areas.class_shares(values, cells.weight))
    return stats


def decode(codes: np.ndarray, scale: float) -> np.ndarray:
    """Float64 values of codes of a kind's scale, NaN where missing; as code / (1 / scale) so
    that percentiles' class bounds (30.0, 20.0 ...) compare exactly."""
    return np.where(codes == cubes.FILL, np.nan, codes / round(1 / scale))


def rounded(values: np.ndarray, percentile_share: bool) -> list:
    digits = 4 if percentile_share else 6
    return [None if np.isnan(v) else v for v in np.round(values, digits).tolist()]


def answer(served: ServedCube, area: dict, geometry, query: SeriesQuery) -> Response:
    times, dates, area, stats = area_series(served, area, geometry, query)
    clip = clipped(served, query.start, query.end, times)
    if query.format == "csv":
        columns = {f"{p}_{k}": v for p, s in stats.items() for k, v in s.items()}
        rows = [csv_cells(["time", *columns])]
        table = np.column_stack(list(columns.values())).round(6).tolist()
        for day, row in zip(dates, table, strict=True):
            rows.append(",".join([day, *("" if np.isnan(v) else repr(v) for v in row)]))
        return Response("\n".join(rows) + "\n", media_type=CSV_TYPE, headers=clip_headers(clip))
    body = {
        "cube": served.name,
        "area": area,
        "units": {p: kinds.kind_of(p).units for p in stats},
        "period": query.period,
        "dates": dates,
        **{p: {k: rounded(v, k != "mean") for k, v in s.items()} for p, s in stats.items()},
    }
    if clip:
        body["clipped"] = clip
    return Response(json.dumps(body), media_type=JSON_TYPE, headers=clip_headers(clip))


@router.post(
    "/series",
    summary="Daily statistics over a GeoJSON polygon",
    openapi_extra=POLYGON_BODY,
    responses={200: {"content": {"text/csv": {}}}, **problems.responses(413)},
)
async def polygon_series(request: Request, query: SeriesParams):
    """The area-weighted daily mean of each product over a Polygon, MultiPolygon or a Feature of
    one (EPSG:4326), and for a percentile product the percent of the area with data in D0 (<= 30)
    ... D4 (<= 2), cumulative as the Drought Monitor's. A cell weighs the share of its EASE2 cell
    square inside the polygon; null on days no cell of the area has data."""
    served = request.app.state.catalog.get(query.cube)
    body = await request.body()
    return await run_in_threadpool(answer_polygon, served, body, query)


def answer_polygon(served: ServedCube, body: bytes, query: SeriesQuery) -> Response:
    limit = get_settings().area_max_vertices
    with parsing(body):
        try:
            geojson = json.loads(body)
        except (ValueError, RecursionError):
            raise InputError("body: not JSON; send a GeoJSON Polygon or Feature") from None
        try:
            geometry = areas.parse_geojson(geojson, limit)
        except areas.TooManyVertices as exc:
            return too_large(str(exc), limit)
    return answer(served, {"id": "polygon"}, geometry, query)


@router.get(
    "/{area}/series",
    summary="Daily statistics over a US state or county",
    responses={200: {"content": {"text/csv": {}}}, **problems.responses(413)},
)
async def fips_series(request: Request, area: str, query: SeriesParams):
    """As POST /v1/areas/series, over `state:FIPS` (2 digits, e.g. state:20, Kansas) or
    `county:FIPS` (5 digits, e.g. county:20161, Riley County, Kansas); boundaries from the US
    Census atlas (us-atlas, 1:10m)."""
    served = request.app.state.catalog.get(query.cube)
    kind, code = areas.parse_area_id(area)
    return await run_in_threadpool(answer_fips, served, kind, code, query)


def answer_fips(served: ServedCube, kind: str, code: str, query: SeriesQuery) -> Response:
    name, geometry = areas.atlas_area(ATLAS_DIR, kind, code)
    return answer(served, {"id": f"{kind}:{code}", "name": name}, geometry, query)
