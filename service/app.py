"""The FastAPI application: catalogue, series, tiles, jobs, Zarr access and the web map.

Every cube is opened at start (service.catalog: metadata, mask, a reader through a bounded
chunk cache) and again when its store publishes a new generation (service.reload).
"""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from model.settings import get_settings
from service import areas, drought, jobs, problems, reload, series, stac, tiles, wmts, zarr_access
from service.bodylimit import BodyLimit
from service.caching import CacheValidators
from service.catalog import Catalog
from service.ratelimit import RateLimit

STATIC = Path(__file__).parent / "static"
DESCRIPTION = """Extended SMAP soil moisture: point series, map tiles, LSTM-Noah fusion on request,
bulk jobs and Zarr access. Values are volumetric soil moisture (m3/m3) on each cube's EASE-Grid
2.0 grid (36 km, or 9 km; `/v1/products` says which); `fused` = w * lstm + (1 - w) * noah
(w = 0.5, the per-cell estimate, or `weight`).

Every error answers in one shape, `Problem`: `detail` (one line), `parameter` at fault, the cube's
`extent` when a point or period falls outside it, the `limit` a request went over. Where the
service has API keys, bulk jobs belong to the key that made them (header `X-API-Key`)."""


def create_app(cubes: list[str | Path] | None = None) -> FastAPI:
    """The app serving the given cubes, paths or URLs (default: the settings' SMAPX_CUBES)."""
    catalog = Catalog([str(p) for p in (cubes if cubes is not None else get_settings().cubes)])
    app = FastAPI(
        title="smapx",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=reload.lifespan,
    )
    app.state.catalog = catalog
    zarr_access.sweep_stale_subsets()
    settings = get_settings()
    problems.install(app)
    app.add_middleware(CacheValidators)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
        timeout=settings.body_timeout_seconds,
    )
    app.add_middleware(
        RateLimit,
        per_minute=settings.rate_limit_per_minute,
        trusted_proxies=settings.trusted_proxies,
        redis_url=settings.redis_url,
        api_keys=[*settings.api_keys, settings.admin_api_key or ""],
    )
    for module in (series, areas, drought, tiles, wmts, jobs, zarr_access, stac):
        app.include_router(module.router, responses=problems.COMMON)

    @app.get("/healthz", tags=["catalogue"], summary="Liveness, the cubes served, the workers")
    def healthz():
        """`warnings` says what does not work now (no job queue, no worker listening); a cube
        found damaged while serving answers 503 with `damaged`, until a new generation opens."""
        workers, warnings = jobs.workers_listening()
        damaged = catalog.damage()
        body = {
            "status": "damaged" if damaged else "ok",
            "cubes": list(catalog.cubes),
            "workers": workers,
            "warnings": warnings,
            **({"damaged": damaged} if damaged else {}),
        }
        return JSONResponse(body, status_code=503 if damaged else 200)

    @app.get(
        "/v1/products",
        tags=["catalogue"],
        summary="Cubes, products, extent, period, grid",
        responses=problems.responses(429),
    )
    def products(request: Request):
        """The default cube's products with units, and every served cube's extent and grid."""
        default = catalog.get(None).describe()
        return {
            "default": catalog.default,
            "products": default["products"],
            "extent": default["extent"],
            "grid": default["grid"],
            "cubes": {name: c.describe() for name, c in catalog.cubes.items()},
        }

    @app.get("/docs", include_in_schema=False)
    def docs():
        """Swagger UI from the bundled assets: nothing loads from a CDN (offline, firewalls)."""
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="smapx API",
            swagger_js_url="/static/vendor/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui.css",
            swagger_favicon_url="/static/vendor/favicon-32x32.png",
        )

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
