"""A cube of random values over Kansas with its climatology: what the area, drought-shape and
WMTS tests serve."""

from pathlib import Path

import numpy as np
import pandas as pd

from model import grid
from model.product import climatology
from model.product import cube as cubes

DAYS = pd.date_range("2010-01-01", "2011-12-31")
EMPTY_DAY = 40  # no cell has lstm that day
BBOX = (-102.6, 36.4, -94.2, 40.6)  # Kansas and a margin


def build(store: Path) -> Path:
    """Random lstm and noah over the cells of BBOX less every fifth (not in the region), a tenth
    of the cell-days missing, and one day missing everywhere; with its climatology."""
    rows, cols = grid.bbox_cells(*BBOX)
    keep = (rows * 7 + cols) % 5 != 0
    rows, cols = rows[keep], cols[keep]
    template = cubes.template(DAYS, rows, cols, ("lstm", "noah"))
    rng = np.random.default_rng(3)
    shape = (len(DAYS), *template["mask"].shape)
    values = {p: rng.uniform(0.05, 0.45, shape).astype(np.float32) for p in ("lstm", "noah")}
    values["lstm"][rng.random(shape) < 0.1] = np.nan
    values["lstm"][EMPTY_DAY] = np.nan
    cubes.create(store, template)
    for block in cubes.blocks(template):
        inside = template["mask"].values[block.y, block.x][None]
        part = {
            p: np.where(inside, v[block.time, block.y, block.x], np.nan) for p, v in values.items()
        }
        cubes.write_block(store, block, part)
    climatology.compute(store, progress=False)
    return store
