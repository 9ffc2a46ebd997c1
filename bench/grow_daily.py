"""Grow a twin-world cube one day at a time with `smapx extend --workers 2` (a private Redis and
two worker processes each time) and check that every stored byte equals one extension over the
whole period with the same climatology base. Prints each growth's wall time.

    python bench/grow_daily.py [--days 10]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.twins import START, assert_same_cube, day, make_twin  # noqa: E402

SMAPX = str(Path(sys.executable).parent / "smapx")


def extend(model, input_path, end: str, out: Path, *extra: str) -> float:
    """One `smapx extend`; its wall time."""
    began = time.perf_counter()
    run = subprocess.run(
        [SMAPX, "extend", "--model", str(model), "--input", str(input_path), "--start", START]
        + ["--end", end, "--out", str(out), *extra],
        capture_output=True,
        text=True,
    )
    if run.returncode:
        sys.exit(run.stderr)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="smapx-grow-"))
    _, input_path, model, _ = make_twin(folder)
    grown, fresh = folder / "grown.zarr", folder / "fresh.zarr"
    times = [
        extend(model, input_path, day(offset), grown, "--workers", "2")
        for offset in range(args.days + 1)
    ]
    extend(model, input_path, day(args.days), fresh, "--base", f"{START}/{day(0)}")
    assert_same_cube(grown, fresh)
    print(f"create {times[0]:.1f} s; growths " + ", ".join(f"{t:.1f}" for t in times[1:]) + " s")
    print(f"byte_identical_after_{args.days}_daily_growths=True")


if __name__ == "__main__":
    main()
