"""STAC: a catalog of the served cubes, one collection each with the datacube extension (its
dimensions, grid and variables) and the Zarr store as an asset, so that catalog tools and
`pystac`/`xpystac` users find the cube and open it with xarray."""

from datetime import UTC, datetime

import numpy as np
import pystac
from fastapi import APIRouter, Request
from pystac.extensions.datacube import DatacubeExtension, Dimension, Variable

from model import grid
from model.product import cube as cubes
from model.product import kinds
from service.catalog import ServedCube

router = APIRouter(prefix="/v1/stac", tags=["catalogue"])
STAC_TYPE = "application/json"
ZARR_MEDIA = "application/vnd+zarr"
POINT_HOWTO = (
    "A point's series: open the `zarr` asset with xarray, project lon/lat to the cube's x/y "
    "(EPSG:6933) and select the nearest cell, e.g. `x, y = pyproj.Transformer.from_crs(4326, "
    "6933, always_xy=True).transform(lon, lat); ds.sel(x=x, y=y, method='nearest')`; or, with "
    "smapx installed, `model.product.access.open_cube(href).smapx.point(lat, lon)`."
)


def _day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def edges(served: ServedCube) -> tuple[list[float], list[float]]:
    """The (x, y) outer edges of the cube's cells in EPSG:6933 metres."""
    half = served.reader.grid.cell_size / 2
    x, y = served.dataset["x"].values, served.dataset["y"].values
    return [float(x.min() - half), float(x.max() + half)], [
        float(y.min() - half),
        float(y.max() + half),
    ]


def collection(served: ServedCube, base: str) -> dict:
    """The STAC collection of one served cube, hrefs absolute under `base`."""
    (x0, x1), (y0, y1) = edges(served)
    (west, east), (south, north) = grid.xy_to_lonlat(np.array([x0, x1]), np.array([y0, y1]))
    period = served.extent
    item = pystac.Collection(
        id=served.name,
        title=f"smapx {served.name}: extended SMAP soil moisture",
        description=(
            f"Daily surface soil moisture (m3/m3) on the {served.reader.grid.title} grid: SMAP as "
            "observed, its LSTM extension over every day with forcing, and land-surface models. "
            + POINT_HOWTO
        ),
        extent=pystac.Extent(
            pystac.SpatialExtent([[float(west), float(south), float(east), float(north)]]),
            pystac.TemporalExtent([[_day(period["start"]), _day(period["end"])]]),
        ),
        license="other",
        keywords=["soil moisture", "SMAP", "LSTM", "EASE-Grid 2.0"],
        extra_fields={"summaries": {"model": [str(served.dataset.attrs.get("model", ""))]}},
    )
    cube = DatacubeExtension.ext(item, add_if_missing=True)
    cube.apply(dimensions=_dimensions(served, (x0, x1), (y0, y1)), variables=_variables(served))
    item.add_asset(
        "zarr",
        pystac.Asset(
            href=f"{base}/v1/zarr/{served.name}",
            title="the cube as a Zarr v3 store (read-only)",
            media_type=ZARR_MEDIA,
            roles=["data"],
            extra_fields={"xarray:open_kwargs": {"engine": "zarr", "consolidated": True}},
        ),
    )
    info = served.reader.climatology_info
    if info is not None:
        item.add_asset("climatology", climatology_asset(served, base, info))
    body = item.to_dict(include_self_link=False, transform_hrefs=False)
    body["links"] = [
        {"rel": "self", "href": f"{base}/v1/stac/collections/{served.name}", "type": STAC_TYPE},
        {"rel": "root", "href": f"{base}/v1/stac", "type": STAC_TYPE},
        {"rel": "parent", "href": f"{base}/v1/stac", "type": STAC_TYPE},
    ]
    return body


def _dimensions(served: ServedCube, x: tuple, y: tuple) -> dict:
    days = served.extent
    return {
        "time": Dimension.from_dict(
            {"type": "temporal", "extent": [days["start"], days["end"]], "step": "P1D"}
        ),
        "y": Dimension.from_dict(
            {
                "type": "spatial",
                "axis": "y",
                "extent": list(y),
                "step": -served.reader.grid.cell_size,
                "reference_system": grid.EPSG,
            }
        ),
        "x": Dimension.from_dict(
            {
                "type": "spatial",
                "axis": "x",
                "extent": list(x),
                "step": served.reader.grid.cell_size,
                "reference_system": grid.EPSG,
            }
        ),
    }


def climatology_asset(served: ServedCube, base: str, info: dict) -> pystac.Asset:
    """The climatology group as an asset of its own, with its variables: what
    `xarray.open_zarr(href)` shows there (the cube's asset does not hold them)."""
    variables = {}
    for p in info["products"]:
        name = f"{p}_percentile"
        variables[name] = {
            "type": "data",
            "dimensions": ["time", "y", "x"],
            "unit": kinds.kind_of(name).units,
            "description": kinds.kind_of(name).describe(name),
        }
        variables[f"{p}_window_mean"] = {
            "type": "data",
            "dimensions": ["dayofyear", "y", "x"],
            "unit": cubes.UNITS,
            "description": f"mean of the base period's {p} within the window of each day of year",
        }
    return pystac.Asset(
        href=f"{base}/v1/zarr/{served.name}/{cubes.CLIMATOLOGY}",
        title=f"the climatology over {info['base_start']}/{info['base_end']}: percentiles and "
        "window means, a Zarr group of the cube",
        media_type=ZARR_MEDIA,
        roles=["data"],
        extra_fields={
            "xarray:open_kwargs": {"engine": "zarr", "consolidated": True},
            "cube:variables": variables,
        },
    )


def _variables(served: ServedCube) -> dict:
    """The variables of the cube's own group: the stored products (derived ones are computed
    on request, and the climatology's are its asset's)."""
    stored = [p for p in served.products if isinstance(kinds.kind_of(p), kinds.Stored)]
    variables = {
        p: {
            "type": "data",
            "dimensions": ["time", "y", "x"],
            "unit": kinds.kind_of(p).units,
            "description": kinds.kind_of(p).describe(p),
        }
        for p in stored
    }
    variables |= {
        name: {"type": "auxiliary", "dimensions": ["y", "x"], "unit": unit, "description": text}
        for name, unit, text in (
            ("lat", "degrees_north", "cell centre latitude"),
            ("lon", "degrees_east", "cell centre longitude"),
            ("mask", None, "cell belongs to the region"),
        )
    }
    return {k: Variable.from_dict(v) for k, v in variables.items()}


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("", summary="STAC catalog of the served cubes")
def catalog(request: Request):
    base = base_url(request)
    links = [
        {"rel": "self", "href": f"{base}/v1/stac", "type": STAC_TYPE},
        {"rel": "root", "href": f"{base}/v1/stac", "type": STAC_TYPE},
        {"rel": "data", "href": f"{base}/v1/stac/collections", "type": STAC_TYPE},
    ] + [
        {"rel": "child", "href": f"{base}/v1/stac/collections/{name}", "type": STAC_TYPE}
        for name in request.app.state.catalog.cubes
    ]
    return {
        "type": "Catalog",
        "stac_version": pystac.get_stac_version(),
        "id": "smapx",
        "title": "smapx extended SMAP soil moisture",
        "description": "The product cubes this service serves, one STAC collection each.",
        "links": links,
    }


@router.get("/collections", summary="STAC collections, one per served cube")
def collections(request: Request):
    base = base_url(request)
    return {
        "collections": [collection(c, base) for c in request.app.state.catalog.cubes.values()],
        "links": [{"rel": "self", "href": f"{base}/v1/stac/collections", "type": STAC_TYPE}],
    }


@router.get("/collections/{cube}", summary="The STAC collection of one served cube")
def cube_collection(request: Request, cube: str):
    return collection(request.app.state.catalog.get(cube), base_url(request))
