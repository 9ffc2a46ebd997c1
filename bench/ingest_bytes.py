"""Bytes per cell-day of an input dataset as `smapx ingest` stores it, on real values: the
hydroDL CONUS sample's NLDAS-2 forcing and SMAP (412 pixels, 2015-2017) written in the ingest's
layout (chunks of a year by 512 cells, zstd), with its daily series at full float32 and at
model.dataset.KEEP_BITS significant bits. Run: python bench/ingest_bytes.py [SAMPLE_DIR]"""

import sys
import tempfile
from pathlib import Path

from model.dataset import KEEP_BITS
from model.sources import ingest
from model.sources.hydrodl import read_hydrodl
from model.world.blocks import store_bytes

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conus412"


def main(sample: Path = SAMPLE) -> None:
    ds = read_hydrodl(sample)[["forcing", "target"]]
    cell_days = ds.sizes["cell"] * ds.sizes["time"]
    with tempfile.TemporaryDirectory() as tmp:
        for label, rounded in (("float32", False), (f"{KEEP_BITS} bits", True)):
            encoding = ingest._encoding(ds, ["forcing", "target"])
            if not rounded:
                encoding = {n: {"chunks": e["chunks"]} for n, e in encoding.items()}
            store = Path(tmp) / f"{rounded}.zarr"
            ds.to_zarr(store, mode="w", encoding=encoding, zarr_format=3, consolidated=True)
            print(f"{label}: {store_bytes(store) / cell_days:.1f} bytes per cell-day")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
