"""`smapx serve`: the app under uvicorn, one process (the cubes live in its memory)."""

from pathlib import Path

import uvicorn

from service.app import create_app


def serve(
    cubes: list[str | Path], host: str = "127.0.0.1", port: int = 8000, access_log: bool = False
) -> None:
    """Load the cubes, then serve until stopped. Access logging is off by default: it costs a
    sizeable share of a millisecond-scale series request. uvicorn's own X-Forwarded-For handling
    is off: the rate limit believes the header only from SMAPX_TRUSTED_PROXIES."""
    app = create_app(cubes)
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        loop="auto",
        http="auto",
        proxy_headers=False,
    )
