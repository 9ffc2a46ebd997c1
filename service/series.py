"""Point time series: the daily values of the cell that holds a point, as JSON or CSV, in a
plain form, an OGC-EDR position query, and a batch of points in one POST.

Handlers are `async` and read on a worker thread: a cold read decodes a chunk per 4 years of
the record (from an object store, a round trip each), which on the event loop would stall every
other request, /healthz included; the hand-off costs tens of microseconds. A batch (up to 500
points, a body of up to SMAPX_MAX_BODY_BYTES) is parsed and encoded there too.
A period reaching past the cube is clipped to it, and the answer says so (`clipped` in JSON,
the `X-Period-Clipped` header in both formats)."""

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from model.errors import InputError
from model.product import kinds
from model.settings import get_settings
from service import encode, problems, weekly
from service.bodylimit import parsing
from service.catalog import ServedCube
from service.numbers import Decimal, decimal
from service.problems import TooLarge, too_large

router = APIRouter(prefix="/v1", tags=["series"])
MAX_BATCH_POINTS = 500
JSON_TYPE = "application/json"
CSV_TYPE = "text/csv; charset=utf-8"
DATE_WIDTH = len('"2000-01-01",')
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Lat = Annotated[
    Decimal, Query(ge=-90, le=90, description="Latitude, degrees north", examples=[38.5])
]
Lon = Annotated[
    Decimal, Query(ge=-180, le=180, description="Longitude, degrees east", examples=[-97.5])
]
Start = Annotated[
    date | None, Query(description="First day (default: the cube's first)", examples=["2016-01-01"])
]
End = Annotated[
    date | None, Query(description="Last day (default: the cube's last)", examples=["2016-12-31"])
]
Products = Annotated[
    str,
    Query(
        description="Comma-separated: smap, lstm, noah, lsm2, fused, lstm_spread, and with a "
        "climatology <product>_percentile, <product>_anomaly",
        examples=["lstm,noah,fused"],
    ),
]
Weight = Annotated[
    Decimal | None,
    Query(
        ge=0,
        le=1,
        description="Weight of lstm in `fused` (default: per-cell estimate, else 0.5)",
        examples=[0.5],
    ),
]
CubeName = Annotated[str | None, Query(description="Served cube (default: the first)")]
Period = Annotated[
    Literal["day", "week"],
    Query(
        description="day, or week: the US Drought Monitor's weeks (Wednesday..Tuesday, named by "
        "their Tuesday): a product's weekly mean; a percentile's, that mean's percentile among "
        "the same weeks of the base period"
    ),
]


@dataclass
class SeriesQuery:
    """The query parameters of both series routes: which cube, days, products and format."""

    start: Start = None
    end: End = None
    products: Products = "lstm"
    format: Literal["json", "csv"] = "json"
    weight: Weight = None
    cube: CubeName = None
    period: Period = "day"


SeriesParams = Annotated[SeriesQuery, Depends()]


def product_codes(
    cube: ServedCube, product: str, iy: int, ix: int, times: slice, weight: float | None
) -> np.ndarray:
    """Codes (FILL where missing) of one product, read through its kind; fused and what derives
    from it at the request's weight, else the cell's."""
    return kinds.cell_codes(cube.reader, cube.weights, weight)(product, iy, ix, times)


def text(product: str) -> encode.Text:
    return encode.text_of(kinds.kind_of(product).scale)


def split_products(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def point_series(
    cube: ServedCube, lat: float, lon: float, start, end, products: list[str], weight: float | None
):
    """(cell description, time slice, {product: codes}) for one point."""
    cube.check_products(products)
    times = cube.period(start, end)
    iy, ix = cube.locate(lat, lon)
    codes = {p: product_codes(cube, p, iy, ix, times, weight) for p in products}
    return cube.cell(iy, ix), times, codes


def weekly_point_series(cube: ServedCube, lat: float, lon: float, query, names: list[str]):
    """(cell description, time slice, week dates, {product: weekly codes}) for one point."""
    cube.check_products(names)
    times = cube.period(query.start, query.end)
    weeks = weekly.weeks_of(cube, times)
    iy, ix = cube.locate(lat, lon)
    codes = {
        p: weekly.weekly_codes(cube, p, np.array([iy]), np.array([ix]), weeks, query.weight)[0]
        for p in names
    }
    return cube.cell(iy, ix), times, weeks.dates, codes


def any_series(cube: ServedCube, lat: float, lon: float, query, names: list[str]):
    """(cell description, time slice, {product: codes}, week dates or None) for one point, per
    day or per week as the query asks."""
    if query.period == "week":
        cell, times, weeks, codes = weekly_point_series(cube, lat, lon, query, names)
        return cell, times, codes, weeks
    cell, times, codes = point_series(cube, lat, lon, query.start, query.end, names, query.weight)
    return cell, times, codes, None


def clipped(cube: ServedCube, start, end, times: slice) -> str | None:
    """What was served, when a requested period reached past the cube's; else None."""
    first, last = cube.dates[times.start], cube.dates[times.stop - 1]
    if (start is not None and str(start) < first) or (end is not None and str(end) > last):
        return f"{first}/{last}"
    return None


def clip_headers(clip: str | None) -> dict:
    return {"X-Period-Clipped": clip} if clip else {}


def series_json(
    cube: ServedCube,
    cell: dict,
    times: slice,
    codes: dict,
    clip: str | None = None,
    weeks: list[str] | None = None,
) -> str:
    """The JSON answer; `clipped` holds the period served when the request's reached past it;
    `weeks` the dates of weekly values (their Tuesdays) in place of the days `times`."""
    units = {p: kinds.kind_of(p).units for p in codes}
    shared = set(units.values())
    head = {
        "cube": cube.name,
        "cell": cell,
        "units": shared.pop() if len(shared) == 1 else None,  # None: see product_units
        "product_units": units,
    }
    if clip:
        head["clipped"] = clip
    head = json.dumps(head)[:-1]
    dates = (
        cube.dates_json[DATE_WIDTH * times.start : DATE_WIDTH * times.stop - 1]
        if weeks is None
        else ",".join(f'"{d}"' for d in weeks)
    )
    body = "".join(f',"{p}":{encode.json_array(c, text(p))}' for p, c in codes.items())
    return f'{head},"time":[{dates}]{body}}}'


def series_csv(
    cube: ServedCube,
    times: slice,
    codes: dict,
    prefix: dict | None = None,
    header: bool = True,
    weeks: list[str] | None = None,
) -> str:
    """One row per day (or per week, `weeks` their dates): [prefix columns,] time, products."""
    lead = cube.dates_csv[times] if weeks is None else np.array([f"{d}," for d in weeks], object)
    repeated = csv_cells(prefix.values()) + "," if prefix else ""
    names = [*(prefix or {}), "time", *codes]
    texts = [text(p) for p in codes]
    return (csv_cells(names) + "\n" if header else "") + encode.csv_rows(
        lead, list(codes.values()), texts, repeated
    )


def location(lat: float, lon: float, cell: dict) -> dict:
    """The CSV columns that say where a series is: the point asked for, the cell that holds it
    and the cell's centre."""
    return {
        "lat": lat,
        "lon": lon,
        "row": cell["row"],
        "col": cell["col"],
        "cell_lat": cell["lat"],
        "cell_lon": cell["lon"],
    }


def csv_cells(values) -> str:
    """One CSV line without its end: a value holding a comma, a quote, CR or LF quoted (the
    terminator names both line ends, so the writer quotes either), and text that a spreadsheet
    would run as a formula neutralised (`inert`)."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\r\n").writerow([inert(v) for v in values])
    return line.getvalue()[:-2]


def inert(value):
    """Text that begins as a formula does (= + - @, a tab or CR: OWASP's CSV injection) with an
    apostrophe before it, so a spreadsheet shows it instead of running it; numbers as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


@router.get(
    "/series",
    summary="Daily series at a point",
    responses={200: {"content": {"text/csv": {}}, "description": "JSON or CSV series"}},
)
async def series(request: Request, lat: Lat, lon: Lon, query: SeriesParams):
    """The cell that holds (lat, lon): its row/col, centre and fused weight, and the daily
    values of each product (m3/m3, null where missing)."""
    served = request.app.state.catalog.get(query.cube)
    return await run_in_threadpool(answer_series, served, lat, lon, query)


def answer_series(served: ServedCube, lat: float, lon: float, query: SeriesQuery) -> Response:
    """GET /v1/series, off the event loop."""
    cell, times, codes, weeks = any_series(served, lat, lon, query, split_products(query.products))
    clip = clipped(served, query.start, query.end, times)
    if query.format == "csv":
        return Response(
            series_csv(served, times, codes, location(lat, lon, cell), weeks=weeks),
            media_type=CSV_TYPE,
            headers=clip_headers(clip),
        )
    return Response(
        series_json(served, cell, times, codes, clip, weeks),
        media_type=JSON_TYPE,
        headers=clip_headers(clip),
    )


POINT_WKT = re.compile(r"^\s*POINT\s*\(\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)\s*\)\s*$", re.IGNORECASE)


def parse_point(coords: str) -> tuple[float, float]:
    """(lat, lon) from WKT `POINT(lon lat)`."""
    match = POINT_WKT.match(coords)
    if not match:
        raise InputError(f"coords: expected POINT(lon lat), got {coords!r}")
    lon, lat = float(match.group(1)), float(match.group(2))
    check_position("coords", lat, lon)
    return lat, lon


def check_position(where: str, lat: float, lon: float) -> None:
    """InputError unless (lat, lon) is a finite position in degrees, hinting at a swap."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise InputError(f"{where}: lat and lon must be finite numbers, got {lat}, {lon}")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        hint = "; did you swap lat and lon?" if abs(lat) > 90 >= abs(lon) else ""
        raise InputError(f"{where}: lat {lat}, lon {lon} is not a position in degrees{hint}")


def parse_interval(text: str | None) -> tuple[date | None, date | None]:
    """EDR `datetime`: a day, `a/b`, `../b` or `a/..`."""
    if not text:
        return None, None
    parts = text.split("/")
    if len(parts) > 2:
        raise InputError(f"datetime: expected a/b, got {text!r}")
    try:
        days = [None if p in ("", "..") else date.fromisoformat(p[:10]) for p in parts]
    except ValueError:
        raise InputError(f"datetime: {text!r} is not an ISO date or interval") from None
    return (days[0], days[0]) if len(days) == 1 else (days[0], days[1])


def coverage_json(
    cube: ServedCube, lat: float, lon: float, cell: dict, times: slice, codes: dict
) -> str:
    """A CoverageJSON point series, the EDR position query's JSON form."""
    params = {
        p: {
            "type": "Parameter",
            "observedProperty": {"label": {"en": p}},
            "unit": {"symbol": kinds.kind_of(p).units},
        }
        for p in codes
    }
    head = json.dumps(
        {
            "type": "Coverage",
            "domain": {
                "type": "Domain",
                "domainType": "PointSeries",
                "axes": {
                    "x": {"values": [cell["lon"]]},
                    "y": {"values": [cell["lat"]]},
                    "t": {"values": []},
                },
                "referencing": [
                    {
                        "coordinates": ["x", "y"],
                        "system": {
                            "type": "GeographicCRS",
                            "id": "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
                        },
                    }
                ],
            },
            "parameters": params,
            "cell": cell,
        }
    )
    dates = ",".join(f'"{d}"' for d in cube.dates[times])
    head = head.replace('"t": {"values": []}', f'"t": {{"values": [{dates}]}}', 1)
    ranges = ",".join(
        f'"{p}":{{"type":"NdArray","dataType":"float","axisNames":["t"],'
        f'"shape":[{times.stop - times.start}],"values":{encode.json_array(c, text(p))}}}'
        for p, c in codes.items()
    )
    return head[:-1] + f',"ranges":{{{ranges}}}}}'


@router.get(
    "/edr/{cube}/position",
    summary="OGC-EDR position query",
    responses={200: {"content": {"text/csv": {}, "application/prs.coverage+json": {}}}},
)
async def edr_position(
    request: Request,
    cube: str,
    coords: Annotated[str, Query(description="WKT POINT(lon lat)", examples=["POINT(-97.5 38.5)"])],
    datetime: Annotated[
        str | None, Query(description="a/b, ISO days", examples=["2016-01-01/2016-12-31"])
    ] = None,
    parameter_name: Annotated[str, Query(alias="parameter-name", examples=["lstm,noah"])] = "lstm",
    f: Literal["json", "covjson", "csv"] = "covjson",
    weight: Weight = None,
):
    """The EDR form of /v1/series: `coords=POINT(lon lat)&datetime=a/b&parameter-name=..&f=csv`."""
    served = request.app.state.catalog.get(cube)
    lat, lon = parse_point(coords)
    start, end = parse_interval(datetime)
    return await run_in_threadpool(
        answer_position, served, lat, lon, start, end, parameter_name, f, weight
    )


def answer_position(served: ServedCube, lat, lon, start, end, parameter_name, f, weight):
    """The EDR position query, off the event loop."""
    cell, times, codes = point_series(
        served, lat, lon, start, end, split_products(parameter_name), weight
    )
    headers = clip_headers(clipped(served, start, end, times))
    if f == "csv":
        return Response(series_csv(served, times, codes), media_type=CSV_TYPE, headers=headers)
    return Response(
        coverage_json(served, lat, lon, cell, times, codes),
        media_type="application/prs.coverage+json",
        headers=headers,
    )


BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/geo+json": {
                "example": {
                    "type": "FeatureCollection",
                    "features": [
                        {
                            "type": "Feature",
                            "properties": {"id": "a"},
                            "geometry": {"type": "Point", "coordinates": [-97.5, 38.5]},
                        }
                    ],
                }
            },
            "text/csv": {"example": "id,lat,lon\na,38.5,-97.5\nb,36.6,-97.5\n"},
        },
    }
}


def parse_points(body: bytes, content_type: str) -> list[tuple[str, float, float]]:
    """(id, lat, lon) from a GeoJSON FeatureCollection of Points or a CSV with lat,lon columns;
    a point's id is kept as sent (an empty one stays empty), its row number where it has none."""
    text = body.decode("utf-8", errors="replace")
    if "csv" in content_type:
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as exc:
            raise InputError(f"body: not a CSV of id,lat,lon rows ({exc})") from None
        if rows and not {"lat", "lon"} <= set(rows[0]):
            raise InputError("body: the CSV needs lat and lon columns")
        try:
            points = [
                (str(i) if r.get("id") is None else r["id"], decimal(r["lat"]), decimal(r["lon"]))
                for i, r in enumerate(rows)
            ]
        except (TypeError, ValueError):
            raise InputError("body: lat and lon must be numbers") from None
    else:
        try:
            features = json.loads(text)["features"]
            points = [
                (
                    feature_id(f, i),
                    json_number(f["geometry"]["coordinates"][1]),
                    json_number(f["geometry"]["coordinates"][0]),
                )
                for i, f in enumerate(features)
            ]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError):
            raise InputError("body: expected a GeoJSON FeatureCollection of Points") from None
    if not points:
        raise InputError("body: no points")
    for i, (_, lat, lon) in enumerate(points):
        check_position(f"body: point {i}", lat, lon)
    return points


def json_number(value) -> float:
    """A JSON number as a float; TypeError for anything else (true, "29", null)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def feature_id(feature: dict, index: int) -> str:
    value = (feature.get("properties") or {}).get("id", index)
    return "" if value is None else str(value)


@router.post(
    "/series",
    summary="Daily series at many points",
    openapi_extra=BATCH_BODY,
    responses={200: {"content": {"text/csv": {}}}, **problems.responses(413)},
)
async def series_batch(request: Request, query: SeriesParams):
    """Up to 500 points as GeoJSON or CSV; the answer lists each point's cell and series (JSON)
    or one row per point and day (CSV). Larger batches belong in a bulk job."""
    served = request.app.state.catalog.get(query.cube)
    body, content_type = await request.body(), request.headers.get("content-type", "")
    return await run_in_threadpool(answer_batch, served, body, content_type, query)


def check_batch_size(served: ServedCube, n_points: int, query: SeriesQuery, names: list) -> None:
    """413 before any value is read when a batch asks for more than SMAPX_MAX_SERIES_VALUES:
    each point's series is read from its own chunks, so 500 points over 45 years would decode
    gigabytes and hold the answer (tens of MB) in memory; a bulk job streams it to a file. A
    weekly percentile reads its source's whole record."""
    times = served.period(query.start, query.end)
    if query.period == "week":
        times = weekly.weeks_of(served, times).days
    n_days = sum(
        len(served.dates)
        if query.period == "week" and kinds.is_percentile(p)
        else times.stop - times.start
        for p in names
    )
    values = n_points * n_days
    limit = get_settings().max_series_values
    if values > limit:
        raise TooLarge(
            f"body: {n_points} points x {n_days} days read for {len(names)} products is "
            f"{values} values, over {limit}; ask for a shorter period or fewer points, or use "
            "POST /v1/jobs",
            limit,
        )


def answer_batch(served: ServedCube, body: bytes, content_type: str, query: SeriesQuery):
    with parsing(body):
        points = parse_points(body, content_type)
    if len(points) > MAX_BATCH_POINTS:
        return too_large(
            f"body: {len(points)} points; at most {MAX_BATCH_POINTS} per request, "
            "use POST /v1/jobs for more",
            MAX_BATCH_POINTS,
        )
    names = served.check_products(split_products(query.products))
    check_batch_size(served, len(points), query, names)
    answers = [
        (pid, lat, lon, *any_series(served, lat, lon, query, names)) for pid, lat, lon in points
    ]
    clip = clipped(served, query.start, query.end, answers[0][4])
    weeks = answers[0][6]
    if query.format == "csv":
        parts = [
            series_csv(
                served,
                times,
                codes,
                {"id": pid, "lat": lat, "lon": lon, "row": cell["row"], "col": cell["col"]},
                header=i == 0,
                weeks=weeks,
            )
            for i, (pid, lat, lon, cell, times, codes, _) in enumerate(answers)
        ]
        return Response("".join(parts), media_type=CSV_TYPE, headers=clip_headers(clip))
    items = [
        series_json(
            served,
            {**cell, "id": pid, "lat_requested": lat, "lon_requested": lon},
            times,
            codes,
            clip,
            weeks,
        )
        for pid, lat, lon, cell, times, codes, _ in answers
    ]
    return Response(
        '{"series":[' + ",".join(items) + "]}", media_type=JSON_TYPE, headers=clip_headers(clip)
    )
