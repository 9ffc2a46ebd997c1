"""Drought classes as shapes: a day's cells of each US Drought Monitor class dissolved into
polygons (model.product.shapes), as a GeoJSON FeatureCollection (RFC 7946), optionally within a
bbox. Each class is exclusive (D1 = 10 < percentile <= 20, ...), so the shapes never overlap."""

import json
from typing import Annotated

import numpy as np
import shapely
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from model import grid
from model.errors import InputError
from model.product import geopackage, kinds, shapes
from model.product.cube import FILL
from service import weekly
from service.catalog import ServedCube
from service.series import CubeName, Period
from service.tiles import day_values, parse_day

router = APIRouter(prefix="/v1/drought", tags=["drought"])
GEOJSON = "application/geo+json"
GEOPACKAGE = "application/geopackage+sqlite3"

Product = Annotated[str, Query(description="A *_percentile product", examples=["lstm_percentile"])]
Bbox = Annotated[
    str | None,
    Query(
        description="west,south,east,north (degrees): clip the shapes",
        examples=["-102,37,-94.6,40"],
    ),
]


def check_percentile(served: ServedCube, product: str) -> None:
    served.check_products([product])
    if not kinds.is_percentile(product):
        raise InputError(
            f"product: drought classes are percentiles; use a *_percentile product, not {product!r}"
        )


def day_percentiles(served: ServedCube, product: str, t: int) -> tuple[np.ndarray, ...]:
    """(grid rows, grid cols, percentiles in percent, NaN where missing) of every region cell on
    day t; percentiles exact to the stored 0.01 points, so class bounds compare exactly."""
    check_percentile(served, product)
    mask = served.reader.mask
    flat = np.flatnonzero(mask)
    values = day_values(served, product, t, flat, None).astype(np.float64)
    percent = np.rint(values * 100) / 100
    iy, ix = np.unravel_index(flat, mask.shape)
    return iy + served.reader.row0, ix + served.reader.col0, percent


def week_percentiles(served: ServedCube, product: str, t: int) -> tuple[np.ndarray, ...]:
    """As day_percentiles, of the week (Wednesday..Tuesday) ending on day t."""
    check_percentile(served, product)
    iy, ix, codes = weekly.day_codes(served, product, t, None)
    percent = np.where(codes == FILL, np.nan, codes / 100)
    return iy + served.reader.row0, ix + served.reader.col0, percent


def class_features(served: ServedCube, product: str, day: str, bbox, period: str):
    """(the day's name, [(properties, lon/lat geometry or None)] of D0..D4)."""
    t = served.day_index(parse_day(day))
    percentiles_of = week_percentiles if period == "week" else day_percentiles
    rows, cols, percent = percentiles_of(served, product, t)
    box = None if bbox is None else grid.parse_bbox(bbox)
    features = [
        (
            {
                "class": c.name,
                "label": shapes.LABELS[c.name],
                "percentile_above": None if np.isinf(c.lower) else c.lower,
                "percentile_at_most": c.upper,
                "cells": c.cells,
                "date": served.dates[t],
                "period": period,
                "product": product,
            },
            c.geometry,
        )
        for c in shapes.class_shapes(percent, rows, cols, box, served.reader.grid)
    ]
    return served.dates[t], features


def feature_collection(served: ServedCube, product: str, day: str, bbox, period: str) -> str:
    date, features = class_features(served, product, day, bbox, period)
    return json.dumps(
        {
            "type": "FeatureCollection",
            "name": f"{served.name} {product} {date} drought classes",
            "features": [
                {
                    "type": "Feature",
                    "properties": properties,
                    "geometry": None if g is None else json.loads(shapely.to_geojson(g)),
                }
                for properties, g in features
            ],
        }
    )


def package(served: ServedCube, product: str, day: str, bbox, period: str) -> tuple[str, bytes]:
    """(file name, GeoPackage bytes) of the drought classes."""
    date, features = class_features(served, product, day, bbox, period)
    name = f"drought_{product}_{date}"
    return f"{name}.gpkg", geopackage.write(name.replace("-", "_"), features)


@router.get(
    "/{day}.geojson",
    summary="Drought classes of a day as polygons",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
async def drought_geojson(
    request: Request,
    day: str,
    product: Product = "lstm_percentile",
    bbox: Bbox = None,
    cube: CubeName = None,
    period: Period = "day",
):
    """A FeatureCollection of five features, D0..D4 (property `class`), each the day's cells in
    that class dissolved into a (Multi)Polygon, or a null geometry where no cell is. Classes are
    exclusive here (D0 = 20 < percentile <= 30, ... D4 <= 2) so the shapes tile without overlap;
    area statistics report the Drought Monitor's cumulative shares instead. With period=week,
    the day is a Tuesday and the shapes are of the week's percentiles ending on it."""
    served = request.app.state.catalog.get(cube)
    body = await run_in_threadpool(feature_collection, served, product, day, bbox, period)
    return Response(body, media_type=GEOJSON)


@router.get(
    "/{day}.gpkg",
    summary="Drought classes of a day as a GeoPackage",
    response_class=Response,
    responses={200: {"content": {GEOPACKAGE: {}}}},
)
async def drought_geopackage(
    request: Request,
    day: str,
    product: Product = "lstm_percentile",
    bbox: Bbox = None,
    cube: CubeName = None,
    period: Period = "day",
):
    """The same shapes as the GeoJSON, as an OGC GeoPackage to download: one feature table
    (MultiPolygon, EPSG:4326), a row per class."""
    served = request.app.state.catalog.get(cube)
    name, body = await run_in_threadpool(package, served, product, day, bbox, period)
    return Response(
        body,
        media_type=GEOPACKAGE,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
