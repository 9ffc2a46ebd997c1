"""`smapx serve`: the app under uvicorn, in one process or in several over the same cubes (each
reads them lazily through its own bounded chunk cache, SMAPX_CACHE_MB, so N processes hold N
caches and nothing else of the cubes).

Connections are bounded in time, as a reverse proxy would bound them (docs/operations.md): a
connection has SMAPX_HEADER_TIMEOUT_SECONDS to send a request's head, counted from its opening
and from each answer (uvicorn has no such timeout: a client that opens connections and sends
nothing, or a byte now and then, held them for ever), a body SMAPX_BODY_TIMEOUT_SECONDS
(service.bodylimit), and an idle keep-alive connection closes after SMAPX_KEEP_ALIVE_SECONDS.
"""

import json
import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from model.settings import get_settings
from service.app import create_app
from service.catalog import Catalog


def app_from_settings() -> FastAPI:
    """The app of the cubes the settings name: what each of several worker processes builds."""
    return create_app()


class HeadTimeout(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request head has not arrived within
    SMAPX_HEADER_TIMEOUT_SECONDS of its opening or of the previous answer."""

    head_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.arm()

    def on_headers_complete(self) -> None:
        self.disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle now, waiting for the next request
            self.arm()

    def connection_lost(self, exc) -> None:
        self.disarm()
        super().connection_lost(exc)

    def arm(self) -> None:
        self.disarm()
        seconds = get_settings().header_timeout_seconds
        self.head_timer = self.loop.call_later(seconds, self.timeout_keep_alive_handler)

    def disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None


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
        "http": f"{__name__}:HeadTimeout",  # by name: worker processes died given the class
        "timeout_keep_alive": get_settings().keep_alive_seconds,
    }
    if workers <= 1:
        uvicorn.run(create_app(cubes), **options)
        return
    Catalog([str(c) for c in cubes])
    os.environ["SMAPX_CUBES"] = json.dumps([str(c) for c in cubes])
    uvicorn.run("service.serve:app_from_settings", factory=True, workers=workers, **options)
