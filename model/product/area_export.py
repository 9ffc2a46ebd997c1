"""Bulk area statistics: many areas (US states and counties by FIPS code, GeoJSON polygons),
products and a period in one job, written as one long CSV (a row per area, product and day:
area, date, product, mean, D0..D4) and/or one JSON document (each area as the area routes
answer it). Every value is model.product.area_series', as the routes compute it, an area and a
chunk of days at a time, with a progress report between two chunks.

A request is planned (`plan`) before it is queued and again by the worker that runs it: its
areas resolved and validated, the cube cells each covers found, and the cell-days it reads
counted, so a bad area is refused at submit time and a job reads what its estimate said."""

import csv
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from model.errors import InputError, OutOfRangeError, validated
from model.product import area_series, areas, export, kinds, weekly
from model.product import cube as cubes
from model.product.areas import CLASSES

Number = Annotated[float, Strict()]
Progress = Callable[[float, str], None]
FILES = {"csv": "areas.csv", "json": "areas.json"}
CSV_COLUMNS = ("area", "date", "product", "mean", *CLASSES)
AREA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")  # nothing a spreadsheet would run


class AreaRequest(BaseModel):
    """What a bulk area job computes: which areas, products, days and files."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "areas": [
                        "state:20",
                        "county:20161",
                        {
                            "type": "Feature",
                            "id": "field",
                            "geometry": {
                                "type": "Polygon",
                                "coordinates": [
                                    [[-97.5, 38.0], [-96.5, 38.0], [-96.5, 39.0], [-97.5, 38.0]]
                                ],
                            },
                        },
                    ],
                    "products": ["lstm", "lstm_percentile"],
                    "start": "2016-01-01",
                    "end": "2016-12-31",
                    "period": "week",
                    "formats": ["csv", "json"],
                }
            ]
        },
    )

    areas: list[str | dict[str, Any]] = Field(
        min_length=1,
        description="state:FIPS (2 digits), county:FIPS (5 digits), or a GeoJSON Polygon, "
        "MultiPolygon or Feature of one (EPSG:4326; a Feature's `id` names it).",
    )
    products: list[str] = Field(min_length=1, description="As GET /v1/areas/{area}/series.")
    start: date
    end: date
    period: Literal["day", "week"] = "day"
    formats: list[Literal["csv", "json"]] = Field(["csv"], min_length=1, max_length=2)
    weight: Number | None = Field(
        None, ge=0.0, le=1.0, description="Weight of lstm in fused; default per-cell or 0.5."
    )

    @model_validator(mode="after")
    def _check(self):
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        unknown = [p for p in self.products if not kinds.is_known(p)]
        if unknown:
            raise ValueError(f"unknown product(s) {unknown}; known: {', '.join(kinds.known())}")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats: each at most once, got {self.formats}")
        return self


@dataclass(frozen=True)
class Plan:
    """A request checked against its cube: its days, weeks, areas and the cell-days it reads."""

    request: AreaRequest
    days: slice
    weeks: weekly.Weeks | None
    areas: list[area_series.Area]
    cell_days: int


def parse_request(request: dict | AreaRequest) -> AreaRequest:
    """The validated request; InputError naming the offending field otherwise."""
    return validated(AreaRequest, request)


def resolve(area: str | dict, index: int, atlas_dir: Path, max_vertices: int) -> tuple:
    """(id, name or None, lon/lat geometry) of one requested area; InputError, OutOfRangeError
    or areas.TooManyVertices naming it (`areas[index]`) where it is bad."""
    where = f"areas[{index}]"
    try:
        if isinstance(area, str):
            kind, code = areas.parse_area_id(area)
            name, geometry = areas.atlas_area(atlas_dir, kind, code)
            return f"{kind}:{code}", name, geometry
        geometry = areas.parse_geojson(area, max_vertices)
    except (InputError, OutOfRangeError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    feature = area.get("type") == "Feature"
    props = area.get("properties") if feature else None
    name = props.get("name") if isinstance(props, dict) else None
    if not feature or area.get("id") is None:
        return f"polygon:{index + 1}", name if isinstance(name, str) else None, geometry
    area_id = str(area["id"])
    if not AREA_ID.match(area_id):
        raise InputError(
            f"{where}: a Feature's id names its rows: letters, digits, and _ . : - after the "
            f"first, at most 64; got {area_id!r:.70}"
        )
    return area_id, name if isinstance(name, str) else None, geometry


def plan(
    reader: kinds.Reader, request: dict | AreaRequest, atlas_dir: Path, max_vertices: int
) -> Plan:
    """Check a request against a cube (opened by cube.LazyCube) and find each area's cells:
    InputError, OutOfRangeError or areas.TooManyVertices naming what is wrong."""
    req = parse_request(request)
    check_products(reader, req.products)
    days = export.period_index(reader.dataset, req.start, req.end)
    weeks = weekly.weeks_within(reader.times, days) if req.period == "week" else None
    covered = []
    for index, area in enumerate(req.areas):
        area_id, name, geometry = resolve(area, index, atlas_dir, max_vertices)
        try:
            covered.append(area_series.covering(reader, area_id, name, geometry))
        except OutOfRangeError as exc:
            raise OutOfRangeError(f"areas[{index}]: {exc}") from None
    read_days = days if weeks is None else weeks.days
    total = sum(
        area_series.cell_days(a, req.products, read_days, len(reader.times), weeks is not None)
        for a in covered
    )
    return Plan(req, days, weeks, covered, total)


def check_products(reader: kinds.Reader, products: list[str]) -> None:
    offered = kinds.offered_by(reader.dataset)
    missing = [p for p in products if p not in offered]
    if missing:
        raise InputError(
            f"products: {missing} not available in this cube; available: {', '.join(offered)}"
        )


def dates_of(reader: kinds.Reader, plan_: Plan) -> list[str]:
    if plan_.weeks is not None:
        return plan_.weeks.dates
    return [str(d.date()) for d in reader.times[plan_.days]]


def export_areas(
    cube_path: str,
    atlas_dir: Path,
    request: dict,
    out_dir: Path,
    max_vertices: int,
    progress: Progress | None = None,
) -> list[Path]:
    """Write a bulk area job's files into out_dir and return them; written in a private folder
    and moved in once whole, as exports are. `progress` is told the percent and the area at
    work between two chunks, and may raise there to stop the job."""
    progress = progress or (lambda percent, stage: None)
    reader = cubes.LazyCube(cube_path)
    weights = export.weight_map(reader.dataset, None)
    job = plan(reader, request, atlas_dir, max_vertices)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=out_dir))
    try:
        written = write(reader, weights, job, partial, progress)
        files = [out_dir / f.name for f in written]
        for f in files:
            os.replace(partial / f.name, f)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    progress(100.0, "done")
    return files


def write(
    reader: kinds.Reader, weights: np.ndarray, job: Plan, folder: Path, progress: Progress
) -> list[Path]:
    """The job's files in `folder`: the CSV streamed a chunk at a time, the JSON at the end."""
    req = job.request
    dates = dates_of(reader, job)
    codes_of = kinds.cell_codes(reader, weights, req.weight)
    table = (folder / FILES["csv"]).open("w", newline="") if "csv" in req.formats else None
    rows = csv.writer(table) if table else None
    if rows:
        rows.writerow(CSV_COLUMNS)
    described = []
    try:
        for n, area in enumerate(job.areas):
            stage = f"area {n + 1} of {len(job.areas)}: {area.id}"
            answer = {**area.describe(), "dates": dates}
            for k, product in enumerate(req.products):
                blocks = area_series.statistics_blocks(
                    reader, codes_of, product, area.cells, job.days, job.weeks
                )
                parts = []
                for part, stats in blocks:
                    done = (n + (k + part.start / len(dates)) / len(req.products)) / len(job.areas)
                    progress(100.0 * done, stage)
                    values = {s: area_series.rounded(v, s) for s, v in stats.items()}
                    if rows:
                        write_rows(rows, area.id, dates[part], product, values)
                    parts.append(values)
                answer[product] = {s: [v for p in parts for v in p[s]] for s in parts[0]}
            if "json" in req.formats:
                described.append(answer)
    finally:
        if table:
            table.close()
    files = [folder / FILES["csv"]] if rows else []
    if "json" in req.formats:
        body = {
            "period": req.period,
            "products": req.products,
            "units": {p: kinds.kind_of(p).units for p in req.products},
            "areas": described,
        }
        (folder / FILES["json"]).write_text(json.dumps(body))
        files.append(folder / FILES["json"])
    return files


def write_rows(rows, area_id: str, dates: list[str], product: str, values: dict) -> None:
    """A CSV row per day: area, date, product, mean and, for a percentile, D0..D4 (empty
    otherwise and where no cell has data)."""
    columns = [values.get(c, [None] * len(dates)) for c in ("mean", *CLASSES)]
    for i, day in enumerate(dates):
        rows.writerow([area_id, day, product, *("" if c[i] is None else c[i] for c in columns)])
