"""An extension job split over workers: checked and planned once at submission, then run one
cube block per task through model.production.extend.compute_block and
model.product.cube.write_block, exactly as the in-process `smapx extend` does, so both give the
same cube.

A request is JSON: {"model", "input", "start", "end", "out"} (local paths made absolute, or
fsspec URLs). Its fingerprint (the request and the checkpoint's bytes) is kept beside the cube,
so the same request sent again resumes the cube (only missing blocks run) instead of wiping it.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import xarray as xr

from model.dataset import open_input
from model.errors import InputError
from model.product import climatology
from model.product import cube as cubes
from model.production.extend import begin, compute_block, plan
from model.training import checkpoint
from model.training.checkpoint import Checkpoint

REQUEST_KEYS = ("model", "input", "start", "end", "out")


def normalize_request(request: dict) -> dict:
    """The request with every key present and local paths absolute, so any worker reads the same."""
    missing = [k for k in REQUEST_KEYS if not request.get(k)]
    if missing:
        raise InputError(f"extension request lacks {', '.join(missing)}")
    out = {k: str(request[k]) for k in REQUEST_KEYS}
    for key in ("model", "input", "out"):
        if "://" not in out[key]:
            out[key] = str(Path(out[key]).expanduser().resolve())
    return out


def fingerprint(request: dict) -> str:
    """What makes two cubes the same: model, input, period, and the checkpoint's exact bytes."""
    digest = hashlib.sha256(
        json.dumps({k: request[k] for k in REQUEST_KEYS if k != "out"}, sort_keys=True).encode()
    )
    for path in checkpoint.files(request["model"]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_writable(out: str) -> None:
    """A local store must be creatable: its nearest existing ancestor a writable directory. (A
    URL store is tried for real when the cube is created at submission.)"""
    if "://" in out:
        return
    ancestor = Path(out)
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise InputError(f"cannot write the cube store {out}: {ancestor} is not a writable folder")


def load(request: dict) -> tuple[Checkpoint, xr.Dataset, xr.Dataset]:
    """Checkpoint, input dataset and the cube template of a request; user errors raise here."""
    ckpt = checkpoint.load(request["model"])
    inputs = open_input(request["input"])
    return ckpt, inputs, plan(ckpt, inputs, request["start"], request["end"])


@dataclass(frozen=True)
class ExtensionJob:
    """One extension request on its way to a written cube: normalised and checked once, at
    submission (the checkpoint, the inputs, the period, a writable store), then prepared (the
    cube created or grown) and queued block by block; workers run its blocks (run_block)."""

    request: dict
    template: xr.Dataset

    @classmethod
    def checked(cls, request: dict) -> "ExtensionJob":
        """The job of a request, or the user's error, before anything is written or queued."""
        request = normalize_request(request)
        _, _, template = load(request)
        check_writable(request["out"])
        return cls(request, template)

    @property
    def out(self) -> str:
        return self.request["out"]

    def prepare(self) -> tuple[list[cubes.Block], set[str]]:
        """Create the cube, or grow it (model.production.extend.begin), unless it already holds
        this request; the cube's blocks and the names of those already written."""
        key = fingerprint(self.request)
        info = _read_job_info(self.out)
        if info is None or info.get("fingerprint") != key:
            _begin(self.request, self.template, key)
        done = cubes.blocks_done(self.out)
        _publish_when_complete(self.out, self.template, done)
        return cubes.blocks(self.template), done


def _read_job_info(out: str) -> dict | None:
    try:
        return cubes.read_job_info(out)
    except (OSError, ValueError):
        return None


def _begin(request: dict, template: xr.Dataset, key: str) -> None:
    try:
        begin(template, request["out"])
        cubes.write_job_info(request["out"], {"fingerprint": key, "request": request})
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot write the cube store {request['out']}: {exc}") from exc


def _publish_when_complete(out: str, template: xr.Dataset, done: set[str]) -> None:
    """Once every block is written, show the new days to readers (idempotent: whichever task
    finishes last publishes, and a later one changes nothing)."""
    if {b.name for b in cubes.blocks(template)} <= done:
        climatology.rank_grown(out, template.time.values)
        cubes.publish(out, template.time.values)


@lru_cache(maxsize=2)
def _context(key: str, request_json: str) -> tuple[Checkpoint, xr.Dataset, xr.Dataset, list]:
    """Per worker process and fingerprint (whatever the store): the checkpoint, the inputs
    (opened, not loaded: each block reads its own cells and days, so a worker's memory is one
    block's whatever the region's size) and the blocks."""
    ckpt, inputs, template = load(json.loads(request_json))
    return ckpt, inputs, template, cubes.blocks(template)


def run_block(request: dict, index: int) -> str:
    """Compute and write one block of the cube (skipped if its marker is there); its name."""
    without_store = {k: v for k, v in request.items() if k != "out"}
    ckpt, inputs, template, blocks = _context(
        fingerprint(request), json.dumps(without_store, sort_keys=True)
    )
    block = blocks[index]
    if block.name not in cubes.blocks_done(request["out"]):
        values = compute_block(ckpt, inputs, template, block)
        cubes.write_block(request["out"], block, values)
    _publish_when_complete(request["out"], template, cubes.blocks_done(request["out"]))
    return block.name
