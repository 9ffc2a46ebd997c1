"""OGC WMTS 1.0.0, so that QGIS, ArcGIS and GDAL open smapx as a layer: one layer per product
of a cube, the day as the `Time` dimension, styles `default` (the product's colormap and range)
and `drought` (percentiles' US Drought Monitor classes), two tile matrix sets
(GoogleMapsCompatible, Web Mercator; WGS1984Quad, lon/lat) and both encodings, RESTful and KVP.
Tiles are the XYZ tiles' (service.tiles.render_tile); the matrix sets are morecantile's.

A bad request is answered as WMTS clients read it, an OWS 1.1 ExceptionReport naming the
exception code and the parameter at fault (the locator), with the HTTP status WMTS 1.0.0 gives
the code (400, 501 for an operation this server does not offer), on both encodings."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from model.errors import InputError, OutOfRangeError
from model.product import kinds
from service.catalog import ServedCube
from service.series import CubeName
from service.tiles import DEFAULT_COLORMAP, PNG, Day, TileStyle, matrix_set, parse_day, render_tile

router = APIRouter(prefix="/v1/wmts", tags=["wmts"])
XML = "application/xml"
# WMTS identifier -> (morecantile TileMatrixSet, the CRS as WMTS names it, well-known scale set)
MATRIX_SETS = {
    "GoogleMapsCompatible": (
        "WebMercatorQuad",
        "urn:ogc:def:crs:EPSG::3857",
        "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible",
    ),
    "WGS1984Quad": ("WGS1984Quad", "urn:ogc:def:crs:EPSG::4326", None),
}
MAX_ZOOM = 12  # a 36 km cell spans ~1,000 pixels at zoom 12: deeper zooms add nothing
STYLES = ("default", "drought")
TILE_PARAMETERS = ("Layer", "TileMatrixSet", "TileMatrix", "TileRow", "TileCol")  # GetTile's
# exception code -> HTTP status (WMTS 1.0.0, tables 21 and 24)
EXCEPTION_STATUS = {
    "MissingParameterValue": 400,
    "InvalidParameterValue": 400,
    "TileOutOfRange": 400,
    "OperationNotSupported": 501,
}


class OwsException(Exception):
    """A WMTS request's fault: an exception code of EXCEPTION_STATUS, the parameter at fault (or
    operation not supported), and a sentence saying what is wrong."""

    def __init__(self, code: str, locator: str | None, text: str):
        super().__init__(text)
        self.code, self.locator, self.text = code, locator, text


# The ExceptionReports a route answers, in its OpenAPI document (the schema fuzz holds the
# service to it).
EXCEPTION_REPORTS = {
    status: {"description": f"OWS 1.1 ExceptionReport ({', '.join(codes)})", "content": {XML: {}}}
    for status, codes in {
        400: ("MissingParameterValue", "InvalidParameterValue", "TileOutOfRange"),
        501: ("OperationNotSupported",),
    }.items()
}


def exception_report(exc: OwsException) -> Response:
    """The OWS 1.1 ExceptionReport of a fault, with its code's HTTP status."""
    locator = "" if exc.locator is None else f" locator={quoteattr(exc.locator)}"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ows:ExceptionReport version="1.1.0" xmlns:ows="http://www.opengis.net/ows/1.1" '
        'xml:lang="en">'
        f'<ows:Exception exceptionCode="{exc.code}"{locator}>'
        f"<ows:ExceptionText>{escape(exc.text)}</ows:ExceptionText></ows:Exception>"
        "</ows:ExceptionReport>"
    )
    return Response(body, status_code=EXCEPTION_STATUS[exc.code], media_type=XML)


@contextmanager
def parameter(locator: str | None) -> Iterator[None]:
    """A user error raised inside, as InvalidParameterValue of the parameter `locator`."""
    try:
        yield
    except (InputError, OutOfRangeError) as exc:
        raise OwsException("InvalidParameterValue", locator, str(exc)) from None


def whole_number(locator: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise OwsException(
            "InvalidParameterValue", locator, f"{locator}: {text!r} is not a whole number"
        ) from None


def styles_of(product: str) -> tuple[str, ...]:
    return STYLES if kinds.is_percentile(product) else STYLES[:1]


def tile_style(served: ServedCube, product: str, style: str, time: str | None) -> TileStyle:
    """The tile route's style of a WMTS layer, style and time, each checked."""
    with parameter("Layer"):
        served.check_products([product])
    if style not in styles_of(product):
        raise OwsException(
            "InvalidParameterValue",
            "Style",
            f"Style: {style!r} is not a style of layer {product}; styles: "
            f"{', '.join(styles_of(product))}",
        )
    colormap = "drought" if style == "drought" else DEFAULT_COLORMAP
    day = None if time is None or time.lower() in ("default", "current") else time[:10]
    with parameter("Time"):
        served.day_index(parse_day(day))
    return TileStyle(date=day, colormap=colormap, cube=served.name)


def tile_png(served: ServedCube, layer, style, time, matrix_set_id, matrix, row, col) -> bytes:
    """The PNG of a WMTS tile; OwsException naming the parameter at fault."""
    if matrix_set_id not in MATRIX_SETS:
        raise OwsException(
            "InvalidParameterValue",
            "TileMatrixSet",
            f"TileMatrixSet: unknown {matrix_set_id!r}; known: {', '.join(MATRIX_SETS)}",
        )
    z = whole_number("TileMatrix", matrix)
    y, x = whole_number("TileRow", row), whole_number("TileCol", col)
    if not 0 <= z <= MAX_ZOOM:
        raise OwsException(
            "InvalidParameterValue", "TileMatrix", f"TileMatrix: {z} outside 0..{MAX_ZOOM}"
        )
    tms_id = MATRIX_SETS[matrix_set_id][0]
    tiles = matrix_set(tms_id).matrix(z)
    for locator, value, size in (
        ("TileRow", y, tiles.matrixHeight),
        ("TileCol", x, tiles.matrixWidth),
    ):
        if not 0 <= value < size:
            raise OwsException(
                "TileOutOfRange",
                locator,
                f"{locator}: {value} outside 0..{size - 1} of TileMatrix {z} of {matrix_set_id}",
            )
    style_of_tile = tile_style(served, layer, style, time)
    with parameter(None):
        return render_tile(served, layer, tms_id, z, x, y, style_of_tile)


@lru_cache(maxsize=4)
def matrix_set_xml(identifier: str) -> str:
    tms_id, crs, scale_set = MATRIX_SETS[identifier]
    tms = matrix_set(tms_id)
    matrices = []
    for z in range(MAX_ZOOM + 1):
        m = tms.matrix(z)
        corner = m.pointOfOrigin  # in the CRS's axis order, as WMTS writes it (EPSG:4326: lat lon)
        matrices.append(
            f"<TileMatrix><ows:Identifier>{z}</ows:Identifier>"
            f"<ScaleDenominator>{m.scaleDenominator!r}</ScaleDenominator>"
            f"<TopLeftCorner>{corner[0]!r} {corner[1]!r}</TopLeftCorner>"
            f"<TileWidth>{m.tileWidth}</TileWidth><TileHeight>{m.tileHeight}</TileHeight>"
            f"<MatrixWidth>{m.matrixWidth}</MatrixWidth>"
            f"<MatrixHeight>{m.matrixHeight}</MatrixHeight></TileMatrix>"
        )
    known = f"<WellKnownScaleSet>{scale_set}</WellKnownScaleSet>" if scale_set else ""
    return (
        f"<TileMatrixSet><ows:Identifier>{identifier}</ows:Identifier>"
        f"<ows:SupportedCRS>{crs}</ows:SupportedCRS>{known}{''.join(matrices)}</TileMatrixSet>"
    )


def capabilities(served: ServedCube, base: str, default_cube: bool, day: str) -> str:
    """The GetCapabilities document of a cube's products, `day` the Time dimension's default."""
    ext, query = served.extent, "" if default_cube else f"?cube={served.name}"
    kvp = f"{base}/v1/wmts?" + ("" if default_cube else f"cube={served.name}&")
    layers = []
    for product in served.products:
        template = (
            f"{base}/v1/wmts/1.0.0/{product}/{{Style}}/{{Time}}/{{TileMatrixSet}}/{{TileMatrix}}/"
            f"{{TileRow}}/{{TileCol}}.png{query}"
        )
        styles = "".join(
            f'<Style isDefault="{str(s == "default").lower()}"><ows:Identifier>{s}'
            "</ows:Identifier></Style>"
            for s in styles_of(product)
        )
        links = "".join(
            f"<TileMatrixSetLink><TileMatrixSet>{m}</TileMatrixSet></TileMatrixSetLink>"
            for m in MATRIX_SETS
        )
        layers.append(
            f"<Layer><ows:Title>{escape(product)}</ows:Title>"
            f"<ows:Abstract>{escape(describe(served, product))}</ows:Abstract>"
            f"<ows:WGS84BoundingBox><ows:LowerCorner>{ext['west']} {ext['south']}"
            f"</ows:LowerCorner><ows:UpperCorner>{ext['east']} {ext['north']}</ows:UpperCorner>"
            f"</ows:WGS84BoundingBox><ows:Identifier>{escape(product)}</ows:Identifier>"
            f"{styles}<Format>image/png</Format>"
            f"<Dimension><ows:Identifier>Time</ows:Identifier><ows:UOM>ISO8601</ows:UOM>"
            f"<Default>{day}</Default>"
            f"<Value>{served.dates[0]}/{served.dates[-1]}/P1D</Value></Dimension>{links}"
            f'<ResourceURL format="image/png" resourceType="tile" template={quoteattr(template)}/>'
            "</Layer>"
        )
    operations = "".join(
        f'<ows:Operation name="{name}"><ows:DCP><ows:HTTP><ows:Get xlink:href={quoteattr(kvp)}>'
        '<ows:Constraint name="GetEncoding"><ows:AllowedValues><ows:Value>KVP</ows:Value>'
        "</ows:AllowedValues></ows:Constraint></ows:Get></ows:HTTP></ows:DCP></ows:Operation>"
        for name in ("GetCapabilities", "GetTile")
    )
    metadata = f"{base}/v1/wmts/1.0.0/WMTSCapabilities.xml{query}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Capabilities xmlns="http://www.opengis.net/wmts/1.0" '
        'xmlns:ows="http://www.opengis.net/ows/1.1" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'version="1.0.0">'
        "<ows:ServiceIdentification><ows:Title>smapx extended SMAP soil moisture</ows:Title>"
        "<ows:ServiceType>OGC WMTS</ows:ServiceType>"
        "<ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion></ows:ServiceIdentification>"
        f"<ows:OperationsMetadata>{operations}</ows:OperationsMetadata>"
        f"<Contents>{''.join(layers)}{''.join(matrix_set_xml(m) for m in MATRIX_SETS)}</Contents>"
        f"<ServiceMetadataURL xlink:href={quoteattr(metadata)}/>"
        "</Capabilities>"
    )


def describe(served: ServedCube, product: str) -> str:
    return (
        f"{served.name} {product} ({kinds.kind_of(product).units}): "
        + served.describe()["products"][product]["description"]
    )


def capabilities_response(request: Request, cube: str | None, time: str | None) -> Response:
    catalog = request.app.state.catalog
    served = served_cube(request, cube)
    base = str(request.base_url).rstrip("/")
    with parameter("Time"):
        day = served.dates[served.day_index(parse_day(time))]
    return Response(capabilities(served, base, served.name == catalog.default, day), media_type=XML)


def served_cube(request: Request, cube: str | None) -> ServedCube:
    with parameter("cube"):
        return request.app.state.catalog.get(cube)


@router.get(
    "/1.0.0/WMTSCapabilities.xml",
    summary="WMTS capabilities (RESTful)",
    response_class=Response,
    responses={200: {"content": {XML: {}}}, **EXCEPTION_REPORTS},
)
def rest_capabilities(request: Request, cube: CubeName = None, time: Day = None):
    """One layer per product, the day as the `Time` dimension; its default is the cube's last
    day, or `time` (for clients that read only a dimension's default, as GDAL does)."""
    try:
        return capabilities_response(request, cube, time)
    except OwsException as exc:
        return exception_report(exc)


@router.get(
    "/1.0.0/{layer}/{style}/{time}/{tile_matrix_set}/{tile_matrix}/{tile_row}/{tile_col}.png",
    summary="WMTS tile (RESTful)",
    response_class=Response,
    responses={200: {"content": {PNG: {}}}, **EXCEPTION_REPORTS},
)
async def rest_tile(
    request: Request,
    layer: str,
    style: str,
    time: str,
    tile_matrix_set: str,
    tile_matrix: str,
    tile_row: str,
    tile_col: str,
    cube: CubeName = None,
):
    try:
        served = served_cube(request, cube)
        png = await run_in_threadpool(
            tile_png, served, layer, style, time, tile_matrix_set, tile_matrix, tile_row, tile_col
        )
    except OwsException as exc:
        return exception_report(exc)
    return Response(png, media_type=PNG)


@router.get(
    "",
    summary="WMTS, KVP encoding: GetCapabilities and GetTile",
    response_class=Response,
    responses={200: {"content": {XML: {}, PNG: {}}}, **EXCEPTION_REPORTS},
)
async def kvp(request: Request, cube: CubeName = None):
    """`SERVICE=WMTS&REQUEST=GetCapabilities`, or `REQUEST=GetTile&LAYER=..&STYLE=..&
    TILEMATRIXSET=..&TILEMATRIX=..&TILEROW=..&TILECOL=..&FORMAT=image/png[&TIME=YYYY-MM-DD]`
    (parameter names in any case)."""
    try:
        return await kvp_answer(request, cube)
    except OwsException as exc:
        return exception_report(exc)


async def kvp_answer(request: Request, cube: str | None) -> Response:
    params = {k.upper(): v for k, v in request.query_params.items()}
    if params.get("SERVICE", "WMTS").upper() != "WMTS":
        raise OwsException(
            "InvalidParameterValue", "Service", f"Service: expected WMTS, got {params['SERVICE']!r}"
        )
    if "REQUEST" not in params:
        raise OwsException(
            "MissingParameterValue", "Request", "Request: give GetCapabilities or GetTile"
        )
    operation = params["REQUEST"]
    if operation.lower() == "getcapabilities":
        return capabilities_response(request, cube, params.get("TIME"))
    if operation.lower() != "gettile":
        raise OwsException(
            "OperationNotSupported",
            operation,
            f"Request: {operation!r} is not offered here; GetCapabilities and GetTile are",
        )
    missing = [name for name in TILE_PARAMETERS if name.upper() not in params]
    if missing:
        raise OwsException(
            "MissingParameterValue", missing[0], f"{missing[0]}: GetTile needs {', '.join(missing)}"
        )
    if params.get("FORMAT", "image/png") != "image/png":
        raise OwsException(
            "InvalidParameterValue", "Format", f"Format: only image/png, got {params['FORMAT']!r}"
        )
    served = served_cube(request, cube)
    png = await run_in_threadpool(
        tile_png,
        served,
        params["LAYER"],
        params.get("STYLE", "default") or "default",
        params.get("TIME"),
        params["TILEMATRIXSET"],
        params["TILEMATRIX"],
        params["TILEROW"],
        params["TILECOL"],
    )
    return Response(png, media_type=PNG)
