"""The tiles' pixel-index cache is bounded by memory, not by count: a full tile's index is
0.5 MB, and 1,024 of them (the old bound) held 0.5 GB in every API process."""

import os
import subprocess
import sys

SCRIPT = """
import numpy as np
from types import SimpleNamespace
from model import grid
from service import tiles

class Cube:
    reader = SimpleNamespace(mask=np.ones((406, 964), bool), row0=0, col0=0, grid=grid.M36)

cube = Cube()
first = tiles.pixel_index(cube, "WebMercatorQuad", 6, 10, 24)
for x in range(11, 50):
    tiles.pixel_index(cube, "WebMercatorQuad", 6, x, 24)
again = tiles.pixel_index(cube, "WebMercatorQuad", 6, 49, 24)
assert again is tiles.pixel_index(cube, "WebMercatorQuad", 6, 49, 24)
print(tiles._pixel_indices.currsize, first[0].nbytes + first[1].nbytes)
"""


def test_pixel_indices_stay_within_the_configured_memory():
    env = {**os.environ, "SMAPX_TILE_INDEX_CACHE_MB": "2"}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    held, one_tile = (int(v) for v in run.stdout.split())
    assert one_tile >= 2**19  # a full 256 px tile: 65,536 cells and positions
    assert 2 * one_tile <= held <= 2 * 2**20
