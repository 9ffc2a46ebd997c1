"""Peak memory and speed of `smapx ingest nldas` over a month of full-size hourly NLDAS-2 forcing
files (744 files, 464 x 224 cells, 8 variables) onto the CONUS EASE2 cells.

Writes the files (real NetCDF layout, smooth varying fields) to a temporary folder, runs the real
CLI in a child process, and reads its peak RSS from getrusage. Baselines measured in the same run:
a child that only imports the same modules, and the memory a month held at once would take.

    .venv/bin/python bench/ingest_month.py [--days 31] [--keep DIR]
"""

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.sources import nldas  # noqa: E402  (after the path the script runs from)

NAMES = [names[0] for names in nldas.FORCING_NAMES.values()]


def write_month(folder: Path, days: int) -> int:
    """days x 24 hourly FORA files with diurnal, smooth-in-space fields."""
    lat, lon = np.meshgrid(nldas.LAT, nldas.LON, indexing="ij")
    base = {
        "Tair": 300 - 0.6 * (lat - 25),
        "Qair": 0.012 - 0.0002 * (lat - 25),
        "PSurf": 101000 - 30 * (lon + 125),
        "Wind_E": 3 + np.sin(lon / 5),
        "Wind_N": np.cos(lat / 4),
        "LWdown": 350 - 2 * (lat - 25),
        "SWdown": 0 * lat,
        "Rainf": 0 * lat,
    }
    count = 0
    for hour in pd.date_range("2015-07-01", periods=days * 24, freq="h"):
        sun = max(0.0, np.sin((hour.hour - 12) / 24 * 2 * np.pi + np.pi / 2))
        path = folder / f"NLDAS_FORA0125_H.A{hour:%Y%m%d}.{hour:%H%M}.020.nc"
        with netCDF4.Dataset(path, "w") as nc:
            nc.createDimension("time", None)
            nc.createDimension("lat", nldas.N_LAT)
            nc.createDimension("lon", nldas.N_LON)
            nc.createVariable("time", "f8", ("time",))[:] = [0.0]
            nc.createVariable("lat", "f4", ("lat",))[:] = nldas.LAT
            nc.createVariable("lon", "f4", ("lon",))[:] = nldas.LON
            for name in NAMES:
                var = nc.createVariable(
                    name,
                    "f4",
                    ("time", "lat", "lon"),
                    zlib=True,
                    complevel=1,
                    fill_value=np.float32(9.999e20),
                )
                field = base[name] + (800 * sun if name == "SWdown" else 0)
                if name == "Rainf":
                    field = np.clip(np.sin(lon / 3 + hour.day_of_year + hour.hour / 6), 0, None) * 2
                var[0] = field.astype(np.float32)
        count += 1
    return count


def child_peak_rss(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        sys.exit("the child's peak RSS is not above an earlier child's; run the benchmark alone")
    print(proc.stdout.strip().splitlines()[0])
    return peak / 1024, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--keep", type=Path, help="reuse/keep the hourly files in this folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="smapx-ingest-"))
    files = args.keep or work / "fora"
    files.mkdir(parents=True, exist_ok=True)
    if not any(files.glob("NLDAS_FORA*")):
        t0 = time.perf_counter()
        n = write_month(files, args.days)
        print(
            f"wrote {n} hourly files ({sum(p.stat().st_size for p in files.iterdir()) / 2**20:.0f} "
            f"MiB) in {time.perf_counter() - t0:.0f} s"
        )
    n_files = len(list(files.glob("NLDAS_FORA*")))
    python = sys.executable
    baseline, _ = child_peak_rss(
        [python, "-c", "import model.sources.ingest, cli.main; print('imports only')"]
    )
    peak, wall = child_peak_rss(
        [
            python,
            "-c",
            "from cli.main import main; main()",
            "ingest",
            "nldas",
            str(files),
            "--region",
            "conus",
            "--out",
            str(work / "conus.zarr"),
        ]
    )
    month_at_once = n_files * len(NAMES) * nldas.N_LAT * nldas.N_LON * 4 / 2**20
    print(f"files: {n_files} hourly, {wall:.1f} s ({wall / n_files * 1000:.0f} ms per file)")
    print(
        f"peak RSS: ingest {peak:.0f} MiB, imports-only baseline {baseline:.0f} MiB "
        f"(+{peak - baseline:.0f} MiB for the work)"
    )
    print(
        f"ratio: peak RSS / the month held at once ({month_at_once:.0f} MiB) = "
        f"{peak / month_at_once:.2f}; work / month = {(peak - baseline) / month_at_once:.3f}"
    )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
