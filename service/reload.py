"""The service follows its cubes: every SMAPX_RELOAD_SECONDS it asks each cube's store for its
generation (one small file) and swaps in the cubes that were grown or rewritten
(service.catalog.Catalog.refresh), in a thread beside the requests, without a restart. A swap
opens the new generation's metadata only: its data is read as requests ask for it, through the
same bounded chunk cache, so memory stays bounded through the swap (tests/test_lazy.py)."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from model.settings import get_settings
from service import tiles

logger = logging.getLogger(__name__)


async def follow_cubes(app: FastAPI, seconds: float) -> None:
    """Refresh the catalogue every `seconds` until cancelled; a failed check is retried."""
    while True:
        await asyncio.sleep(seconds)
        try:
            swapped = await asyncio.to_thread(app.state.catalog.refresh)
        except Exception:
            logger.exception("checking the cubes' generations failed; trying again")
            continue
        if swapped:
            tiles.forget_cubes()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run follow_cubes for the life of the server (not when SMAPX_RELOAD_SECONDS is 0)."""
    seconds = get_settings().reload_seconds
    task = asyncio.create_task(follow_cubes(app, seconds)) if seconds > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
