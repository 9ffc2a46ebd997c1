"""`smapx serve`: the app under uvicorn, in one process or in several over the same cubes (each
reads them lazily through its own bounded chunk cache, SMAPX_CACHE_MB, so N processes hold N
caches and nothing else of the cubes)."""

import json
import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from service.app import create_app
from service.catalog import Catalog


def app_from_settings() -> FastAPI:
    """The app of the cubes the settings name: what each of several worker processes builds."""
    return create_app()


def serve(
    cubes: list[str | Path],
    host: str = "127.0.0.1",
    port: int = 8000,
    access_log: bool = False,
    workers: int = 1,
) -> None:
    """Open the cubes, then serve until stopped. Access logging is off by default: it costs a
    sizeable share of a millisecond-scale series request. uvicorn's own X-Forwarded-For handling
    is off: the rate limit believes the header only from SMAPX_TRUSTED_PROXIES. With several
    workers the cubes are checked here first, so a damaged one is refused once, in one line,
    and not by every worker in turn; the workers find them in SMAPX_CUBES."""
    options = {
        "host": host,
        "port": port,
        "access_log": access_log,
        "log_level": "info",
        "proxy_headers": False,
    }
    if workers <= 1:
        uvicorn.run(create_app(cubes), **options)
        return
    Catalog([str(c) for c in cubes])
    os.environ["SMAPX_CUBES"] = json.dumps([str(c) for c in cubes])
    uvicorn.run("service.serve:app_from_settings", factory=True, workers=workers, **options)
