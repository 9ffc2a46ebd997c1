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
from model.product import area_series, areas, kinds
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
    split_products,
)

router = APIRouter(prefix="/v1/areas", tags=["areas"])
ATLAS_DIR = Path(__file__).parent / "static" / "vendor"
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


def area_statistics(
    served: ServedCube, area: dict, geometry, query: SeriesQuery
) -> tuple[slice, list[str], dict, dict]:
    """(time slice, dates, area description, {product: {statistic: float64 values}}) of an
    area, per day or per week (Wednesday..Tuesday): model.product.area_series computes them."""
    names = served.check_products(split_products(query.products))
    times = served.period(query.start, query.end)
    reader = served.reader
    try:
        covered = area_series.covering(reader, area["id"], area.get("name"), geometry)
    except OutOfRangeError as exc:
        raise OutOfRangeError(f"{exc} {served.name}", served.extent) from None
    weeks = weekly.weeks_of(served, times) if query.period == "week" else None
    check_size(served, covered, times if weeks is None else weeks.days, names, weeks is not None)
    codes_of = kinds.cell_codes(reader, served.weights, query.weight)
    stats = {
        p: area_series.product_statistics(reader, codes_of, p, covered.cells, times, weeks)
        for p in names
    }
    dates = served.dates[times] if weeks is None else weeks.dates
    return times, dates, covered.describe(), stats


def check_size(served, area: area_series.Area, days: slice, names: list[str], week: bool) -> None:
    """TooLarge (413) when an area would read more cell-days than allowed; a weekly percentile
    reads its source's whole record."""
    read = area_series.cell_days(area, names, days, len(served.dates), week)
    limit = get_settings().area_max_cell_days
    if read > limit:
        cells = area.cells.weight.size
        raise problems.TooLarge(
            f"area: {cells} cells x {read // cells} days read for {len(names)} products "
            f"is over {limit} cell-days; ask for a shorter period or fewer products",
            limit,
        )


def answer(served: ServedCube, area: dict, geometry, query: SeriesQuery) -> Response:
    times, dates, area, stats = area_statistics(served, area, geometry, query)
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
        **{p: {k: area_series.rounded(v, k) for k, v in s.items()} for p, s in stats.items()},
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
