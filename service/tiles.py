"""Map tiles of any product and day: XYZ Web Mercator and any OGC TileMatrixSet (morecantile),
PNG through a colormap of the one registry (service.colormaps), a TileJSON document and a legend.

A tile is a gather: each pixel's centre is projected once to the EASE2 grid (pyproj) and the
resulting cube cell index is cached per (cube, tile), so serving a tile is a lookup into the
day's field (from the map layout where the cube has one, through the chunk cache), a colormap
table lookup and a PNG encode. Where a pixel spans several cells (low zooms), the field is read
from the coarsest overview of the map layout that still has a cell per pixel (a day of CONUS
at 9 km: one chunk at zoom 0-2, where the full level decodes fifteen). Cells outside the region,
and missing values, are transparent. Handlers are `async` and render on a worker thread, as the
series ones read.
Caching headers (ETag, Cache-Control) come from service.caching.
"""

import datetime
import io
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

import cachetools
import morecantile
import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from morecantile.errors import InvalidIdentifier
from PIL import Image
from pyproj import Transformer

from model import grid
from model.errors import InputError, OutOfRangeError
from model.product import cube as cubes
from model.product import kinds
from model.settings import get_settings
from service import colormaps, weekly
from service.catalog import ServedCube
from service.numbers import Integer, decimal
from service.series import CubeName, Period, Weight

router = APIRouter(prefix="/v1", tags=["tiles"])
DEFAULT_COLORMAP = colormaps.DEFAULT
DEFAULT_RESCALE = kinds.STORED.rescale_text
DEFAULT_TMS = "WebMercatorQuad"
CYLINDRICAL_EPSG = {3857, 3395}
NO_DATA = colormaps.NO_DATA
PNG = "image/png"

Day = Annotated[
    str | None,
    Query(description="Day, YYYY-MM-DD (default: the cube's last)", examples=["2016-07-01"]),
]
Colormap = Annotated[
    str,
    Query(
        description="A colormap of /v1/colormaps: a rio-tiler name, or `drought` (US Drought "
        "Monitor classes of a *_percentile product)",
        examples=["viridis"],
    ),
]
Rescale = Annotated[
    str | None,
    Query(
        description="min,max mapped to the colormap's ends (default: the product's, as "
        "/v1/products lists it: 0,0.5 m3/m3; 0,100 for percentiles, -0.1,0.1 for anomalies, "
        "0,0.05 for lstm_spread)",
        examples=["0,0.5"],
    ),
]


@dataclass
class TileStyle:
    """The query parameters every tile route takes: which cube, day and colouring."""

    date: Day = None
    colormap: Colormap = DEFAULT_COLORMAP
    rescale: Rescale = None

    def rescale_of(self, product: str) -> str:
        return self.rescale or kinds.kind_of(product).rescale_text

    weight: Weight = None
    cube: CubeName = None
    period: Period = "day"


Style = Annotated[TileStyle, Depends()]


def parse_rescale(text: str) -> tuple[float, float]:
    try:
        low, high = (decimal(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"rescale: expected min,max, got {text!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise InputError(f"rescale: finite min,max with max > min, got {text!r}")
    return low, high


def parse_day(text: str | None):
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"date: {text!r} is not a YYYY-MM-DD day") from None


@lru_cache(maxsize=32)
def matrix_set(tms_id: str) -> morecantile.TileMatrixSet:
    """A TileMatrixSet by id, cached: morecantile deep-copies it on every lookup."""
    try:
        return morecantile.tms.get(tms_id)
    except InvalidIdentifier:
        raise OutOfRangeError(
            f"tileMatrixSetId: unknown {tms_id!r}; known: {', '.join(morecantile.tms.list())}"
        ) from None


@lru_cache(maxsize=32)
def _to_ease(tms_id: str) -> Transformer:
    return Transformer.from_crs(matrix_set(tms_id).crs._pyproj_crs, grid.CRS_EASE2, always_xy=True)


@lru_cache(maxsize=32)
def _separable(tms_id: str) -> bool:
    """True when the TMS's x depends on longitude only and y on latitude only, as in EASE2
    (cylindrical): then a tile's 256 x 256 centres project as 256 + 256 points."""
    crs = matrix_set(tms_id).crs._pyproj_crs
    return crs.is_geographic or crs.to_epsg() in CYLINDRICAL_EPSG


def _pixel_centres_in_ease(tms_id: str, px: np.ndarray, py: np.ndarray):
    """EASE2 x and y (flattened, row-major) of the grid of TMS coordinates px x py."""
    to_ease = _to_ease(tms_id)
    if _separable(tms_id):
        ex, _ = to_ease.transform(px, np.full_like(px, py[len(py) // 2]))
        _, ey = to_ease.transform(np.full_like(py, px[len(px) // 2]), py)
        gx, gy = np.meshgrid(ex, ey)
        return gx.ravel(), gy.ravel()
    gx, gy = np.meshgrid(px, py)
    return to_ease.transform(gx.ravel(), gy.ravel())


def _index_bytes(index) -> int:
    return 64 if index is None else index[0].nbytes + index[1].nbytes + 64


# Pixel indices by bytes, not by count: a full 256 px tile's index is 0.5 MB, so a cache of 1,024
# of them held 0.5 GB per process. Requests render tiles on several threads, hence the lock.
_pixel_indices = cachetools.LRUCache(
    maxsize=get_settings().tile_index_cache_mb * 2**20, getsizeof=_index_bytes
)


@cachetools.cached(_pixel_indices, lock=threading.Lock())
def pixel_index(cube: ServedCube, tms_id: str, z: int, x: int, y: int):
    """(flat cube indices of the covered pixels, their positions in the tile, the tile's shape,
    the pixels' spacing in cube cells) or None if the tile misses the region."""
    tms = matrix_set(tms_id)
    matrix = tms.matrix(z)
    width, height = matrix.tileWidth, matrix.tileHeight
    bounds = tms.xy_bounds(x, y, z)
    px = bounds.left + (np.arange(width) + 0.5) * (bounds.right - bounds.left) / width
    py = bounds.top - (np.arange(height) + 0.5) * (bounds.top - bounds.bottom) / height
    ex, ey = _pixel_centres_in_ease(tms_id, px, py)
    rows, cols = cube.reader.grid.xy_to_rowcol(ex, ey)
    mask = cube.reader.mask
    iy, ix = rows - cube.reader.row0, cols - cube.reader.col0
    inside = (rows >= 0) & (iy >= 0) & (iy < mask.shape[0]) & (ix >= 0) & (ix < mask.shape[1])
    pixels = np.nonzero(inside)[0]
    pixels = pixels[mask[iy[pixels], ix[pixels]]]
    if pixels.size == 0:
        return None
    return (
        (iy[pixels] * mask.shape[1] + ix[pixels]).astype(np.int32),
        pixels.astype(np.int32),
        (height, width),
        _cells_per_pixel(ex, ey, (height, width), pixels) / cube.reader.grid.cell_size,
    )


def _cells_per_pixel(ex, ey, shape, pixels) -> float:
    """The median, over the pixels on region cells, of the distance (EASE2 m) between a pixel
    centre and its neighbours', the shorter of across and down: a low-zoom tile's pixels
    near the pole are much closer in EASE2 y than those over the region."""
    across = np.abs(np.gradient(ex.reshape(shape), axis=1)).ravel()[pixels]
    down = np.abs(np.gradient(ey.reshape(shape), axis=0)).ravel()[pixels]
    return float(np.median(np.minimum(across, down)))


def forget_cubes() -> None:
    """Drop the pixel indices and weekly maps cached per served cube, after the catalogue
    swapped cubes: they would keep the replaced cubes, and their memory, alive."""
    _pixel_indices.clear()
    _week_fields.clear()


# weekly maps by (cube, product, Tuesday, weight): a week's percentile map reads every region
# cell's record, so the tiles of one week share it
_week_fields = cachetools.LRUCache(maxsize=16)


@cachetools.cached(_week_fields, lock=threading.Lock())
def week_field(cube: ServedCube, product: str, t: int, weight) -> np.ndarray:
    return weekly.week_field(cube, product, t, weight)


def week_values(cube: ServedCube, product: str, t: int, flat: np.ndarray, weight) -> np.ndarray:
    """As day_values, of the week (Wednesday..Tuesday) ending on day t."""
    return kinds.kind_of(product).decode(week_field(cube, product, t, weight).ravel()[flat])


def overview_values(
    cube: ServedCube, product: str, t: int, flat: np.ndarray, factor: int, weight
) -> np.ndarray:
    """As day_values, from the map layout's level coarsened `factor` times: each flat cell
    index read at the coarse cell that covers it."""
    kind, n_x = kinds.kind_of(product), cube.reader.mask.shape[1]
    coarse = (flat // n_x // factor) * -(-n_x // factor) + flat % n_x // factor
    codes = kind.overview_day(cube.reader, product, t, factor, _weight(cube, weight))
    return kind.decode(codes.ravel()[coarse])


def day_values(cube: ServedCube, product: str, t: int, flat: np.ndarray, weight) -> np.ndarray:
    """Float32 values at the given flat cell indices on day t (NaN where missing), in the
    product's units; fused and what derives from it at the request's weight, else the cells'."""
    kind = kinds.kind_of(product)
    return kind.decode(kind.day(cube.reader, product, t, _weight(cube, weight)).ravel()[flat])


def _weight(cube: ServedCube, weight):
    """The request's fusion weight, else the cube's per-cell ones."""
    return cube.weights if weight is None else weight


def encode_png(rgba: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, "PNG", compress_level=1)
    return out.getvalue()


def encode_indexed(colors: np.ndarray, table: np.ndarray) -> bytes:
    """PNG of colormap indices (NO_DATA transparent). A palette PNG when a palette slot is free
    for transparency (nearly always: a day's values span part of the colormap), which encodes
    several times faster than RGBA; RGBA otherwise. Both decode to the same pixels."""
    used = np.bincount(colors.ravel(), minlength=NO_DATA + 1).astype(bool)
    free = np.flatnonzero(~used[:NO_DATA])
    if free.size == 0:
        return encode_png(table[colors])
    palette = table[:NO_DATA].copy()
    palette[free[0]] = 0
    image = Image.fromarray(np.where(colors == NO_DATA, free[0], colors).astype(np.uint8), "P")
    image.putpalette(palette[:, :3].tobytes())
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1, transparency=palette[:, 3].tobytes())
    return out.getvalue()


@lru_cache(maxsize=8)
def empty_tile(height: int, width: int) -> bytes:
    return encode_png(np.zeros((height, width, 4), np.uint8))


def render_tile(
    cube: ServedCube, product: str, tms_id: str, z: int, x: int, y: int, style: TileStyle
) -> bytes:
    cube.check_products([product])
    tms = matrix_set(tms_id)
    if not tms.minzoom <= z <= tms.maxzoom:
        raise OutOfRangeError(f"z: {z} outside {tms.minzoom}..{tms.maxzoom} of {tms_id}")
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise OutOfRangeError(f"tile {z}/{x}/{y} is outside the {tms_id} matrix")
    colormaps.check(style.colormap, product)
    table = colormaps.table(style.colormap)
    low, high = (
        (0.0, 1.0)  # a classed colormap has no rescale
        if colormaps.classes_of(style.colormap)
        else parse_rescale(style.rescale_of(product))
    )
    t = cube.day_index(parse_day(style.date))
    index = pixel_index(cube, tms_id, z, x, y)
    if index is None:
        return empty_tile(matrix.tileHeight, matrix.tileWidth)
    flat, pixels, shape, cells_per_pixel = index
    colors = np.full(shape[0] * shape[1], NO_DATA, np.int16)
    kind, weight = kinds.kind_of(product), _weight(cube, style.weight)
    factor = kind.overview_factor(cube.reader, product, cells_per_pixel, weight)
    if style.period == "week":
        values = week_values(cube, product, t, flat, style.weight)
    elif factor > 1:
        values = overview_values(cube, product, t, flat, factor, style.weight)
    else:
        values = day_values(cube, product, t, flat, style.weight)
    colors[pixels] = colormaps.paint(style.colormap, values, low, high)
    return encode_indexed(colors.reshape(shape), table)


@router.get(
    "/tiles/{product}/{z}/{x}/{y}.png",
    summary="XYZ Web Mercator tile",
    response_class=Response,
    responses={200: {"content": {PNG: {}}}},
)
async def xyz_tile(
    request: Request, product: str, z: Integer, x: Integer, y: Integer, style: Style
):
    """A 256 px PNG of one product on one day; region cells coloured, the rest transparent."""
    return await tms_tile(request, product, DEFAULT_TMS, z, x, y, style)


@router.get(
    "/tiles/{product}/{tileMatrixSetId}/{z}/{x}/{y}.png",
    summary="OGC TileMatrixSet tile",
    response_class=Response,
    responses={200: {"content": {PNG: {}}}},
)
async def tms_tile(
    request: Request,
    product: str,
    tileMatrixSetId: str,
    z: Integer,
    x: Integer,
    y: Integer,
    style: Style,
):
    """The same tile in any TileMatrixSet morecantile knows (see /v1/tileMatrixSets)."""
    served = request.app.state.catalog.get(style.cube)
    png = await run_in_threadpool(render_tile, served, product, tileMatrixSetId, z, x, y, style)
    return Response(png, media_type=PNG)


@router.get("/tileMatrixSets", summary="TileMatrixSets available")
def tile_matrix_sets(request: Request):
    base = str(request.base_url).rstrip("/")
    return {
        "tileMatrixSets": [
            {
                "id": t,
                "links": [
                    {
                        "rel": "self",
                        "type": "application/json",
                        "href": f"{base}/v1/tileMatrixSets/{t}",
                    }
                ],
            }
            for t in morecantile.tms.list()
        ]
    }


@router.get("/tileMatrixSets/{tileMatrixSetId}", summary="One TileMatrixSet definition")
def tile_matrix_set(tileMatrixSetId: str):
    return JSONResponse(matrix_set(tileMatrixSetId).model_dump(mode="json", exclude_none=True))


@router.get("/tilejson/{product}.json", summary="TileJSON 3.0 for a product and day")
def tilejson(request: Request, product: str, style: Style):
    served = request.app.state.catalog.get(style.cube)
    served.check_products([product])
    colormaps.check(style.colormap, product)
    rescale = style.rescale_of(product)
    parse_rescale(rescale)
    day = served.dates[served.day_index(parse_day(style.date))]
    query = f"date={day}&colormap={style.colormap}&rescale={rescale}&cube={served.name}"
    if style.period != "day":
        query += f"&period={style.period}"
    if style.weight is not None:
        query += f"&weight={style.weight}"
    base = str(request.base_url).rstrip("/")
    ext = cubes.extent(served.dataset)
    half = 0.25
    bounds = [ext["west"] - half, ext["south"] - half, ext["east"] + half, ext["north"] + half]
    return {
        "tilejson": "3.0.0",
        "name": f"{served.name} {product} {day}",
        "description": served.describe()["products"][product]["description"],
        "tiles": [f"{base}/v1/tiles/{product}/{{z}}/{{x}}/{{y}}.png?{query}"],
        "minzoom": 0,
        "maxzoom": 12,
        "bounds": bounds,
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 4],
        "attribution": "smapx extended SMAP",
    }


@router.get("/colormaps", summary="Colormap names")
def colormap_names():
    """Every colormap tiles and legends take, the default, and the products a classed one
    colours."""
    return colormaps.catalogue()


@router.get(
    "/legend",
    summary="Legend of a colormap and rescale",
    response_class=Response,
    responses={200: {"content": {PNG: {}, "application/json": {}}}},
)
def legend(
    colormap: Colormap = DEFAULT_COLORMAP,
    rescale: Rescale = None,
    product: Annotated[
        str | None,
        Query(description="The product coloured: its unit and default rescale", examples=["lstm"]),
    ] = None,
    f: Annotated[str, Query(pattern="^(png|json)$")] = "png",
):
    """A colour bar with ticks under their values and the units (PNG), or its stops and ticks
    (JSON, each tick with its position 0..1 along the bar); for `drought`, its classes with
    labels."""
    colormaps.check(colormap, product)
    kind = kinds.kind_of(product) if product else kinds.STORED
    low, high = parse_rescale(rescale or kind.rescale_text)
    units = kind.units
    if f == "json":
        return JSONResponse(colormaps.legend(colormap, low, high, units))
    return Response(colormaps.legend_png(colormap, low, high, units), media_type=PNG)
