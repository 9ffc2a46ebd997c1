"""End to end: SMAP granules, NLDAS-2 forcing and Noah files and a static GeoTIFF, in their real
formats -> `smapx ingest` -> `smapx train` -> `smapx extend`, through the real CLI."""

import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from model import grid
from model.dataset import KEEP_BITS, open_input
from model.product.cube import open_cube
from model.sources import nldas
from tests.real_formats import BBOX, box_cells, write_day_of_forcing, write_granule


def invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result.output


def test_ingest_train_extend(files, tmp_path):
    data = tmp_path / "inputs.zarr"
    out = invoke("ingest", "smap", files / "smap", "--bbox", BBOX, "--out", data)
    assert "read 30 files, wrote 30 days (2015-04-01..2015-08-24), skipped 0 files" in out
    out = invoke("ingest", "nldas", files / "fora", "--out", data)
    assert "read 150 files, wrote 150 days" in out
    assert "days averaged over fewer than 24 hours (150): 2015-04-01 (1 h)" in out
    invoke("ingest", "noah", files / "noah", "--out", data)
    invoke("ingest", "static", files / "sand.tif", "--name", "sand", "--out", data)
    ds = open_input(data)
    assert ds.sizes == {"time": 150, "cell": 9, "variable": 8, "static_variable": 1}
    assert ds["target"].notnull().sum() == 30 * 9
    assert np.isfinite(ds["forcing"].values).all() and np.isfinite(ds["static"].values).all()

    ckpt, cube = tmp_path / "ckpt", tmp_path / "cube.zarr"
    out = invoke(
        *("train", "--input", data, "--start", "2015-04-01", "--end", "2015-08-28"),
        *("--out", ckpt, "--max-epochs", 2, "--hidden", 16, "--validation-days", 30),
        *("--ensemble", 1, "--device", "cpu", "--threads", 1),
    )
    assert "median RMSE" in out
    invoke(
        *("extend", "--model", ckpt, "--input", data, "--start", "2015-04-01"),
        *("--end", "2015-08-28", "--out", cube, "--threads", 1),
    )
    result = open_cube(cube)
    assert set(result.data_vars) >= {"lstm", "smap", "noah"}
    iy, ix = ds.row.values - result.attrs["row0"], ds.col.values - result.attrs["col0"]
    lstm = result["lstm"].values[:, iy, ix]
    assert np.isfinite(lstm).all() and (lstm > 0).all() and (lstm < 0.6).all()
    np.testing.assert_allclose(result["smap"].values[:, iy, ix], ds["target"].values, atol=1e-4)
    np.testing.assert_allclose(result["noah"].values[:, iy, ix], ds["noah"].values, atol=1e-4)


def test_cli_user_error_is_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cli.main import main; main()",
            "ingest",
            "smap",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "x.zarr"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: SMAP granule folder not found: {tmp_path / 'missing'}"
    assert nldas.N_LAT == 224


def test_ingest_at_9km_through_the_cli(tmp_path):
    """`smapx ingest smap --grid 9km` reads SPL3SMP_E into a 9 km dataset; `smapx ingest nldas`
    and `static` then fill it on its grid, and `--grid 36km` on it is refused in one line."""
    cells = box_cells(grid.M09)
    (tmp_path / "smap").mkdir()
    (tmp_path / "fora").mkdir()
    write_granule(tmp_path / "smap", "2015-04-01", am={cells[5]: (0.27, 0)}, on=grid.M09)
    write_day_of_forcing(tmp_path / "fora", "2015-04-01", hours=[0, 1])
    data = tmp_path / "in9.zarr"
    out = invoke(
        "ingest", "smap", tmp_path / "smap", "--grid", "9km", f"--bbox={BBOX}", "--out", data
    )
    assert f"created {data} with the 9 km cells of" in out
    invoke("ingest", "nldas", tmp_path / "fora", "--out", data)
    ds = open_input(data)
    assert grid.of(ds.attrs) == grid.M09 and ds.sizes["cell"] == len(cells)
    stored = 2.0**-KEEP_BITS  # an ingested series keeps KEEP_BITS significant bits
    assert ds["target"].values[0, 5] == pytest.approx(0.27, rel=stored)
    assert ds["target"].notnull().sum() == 1
    np.testing.assert_allclose(ds["forcing"].sel(variable="tair").values, 270.5, rtol=stored)
    result = CliRunner().invoke(
        app, ["ingest", "nldas", str(tmp_path / "fora"), "--out", str(data), "--grid", "36km"]
    )
    assert result.exit_code == 1  # the refusal, which `smapx` prints as one line
    assert str(result.exception) == (
        f"--grid is on the 36 km grid but the dataset {data} is on the 9 km grid; "
        "use one grid throughout"
    )
