"""End to end: SMAP granules, NLDAS-2 forcing and Noah files and a static GeoTIFF, in their real
formats -> `smapx ingest` -> `smapx train` -> `smapx extend`, through the real CLI."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from model import grid
from model.dataset import open_input
from model.product.cube import open_cube
from model.sources import nldas
from tests.real_formats import BOX, forcing_fields, write_geotiff, write_granule, write_hourly

DAYS = pd.date_range("2015-04-01", periods=150)
BBOX = ",".join(str(v) for v in BOX)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """150 days of one-hour forcing and Noah files, a SMAP granule every fifth day whose soil
    moisture follows the rain and the cell's sand fraction, and a sand GeoTIFF."""
    root = tmp_path_factory.mktemp("products")
    rows, cols = grid.bbox_cells(*BOX)
    _, lon = grid.rowcol_to_latlon(rows, cols)
    rng = np.random.default_rng(3)
    rain = rng.gamma(0.3, 2.0, len(DAYS))
    wetness = pd.Series(rain).ewm(alpha=0.2).mean().to_numpy()
    sand = 20.0 + 40.0 * (lon - lon.min()) / (np.ptp(lon) or 1.0)
    for folder in ("smap", "fora", "noah"):
        (root / folder).mkdir()
    for i, day in enumerate(DAYS):
        noon = day + pd.Timedelta(hours=12)
        write_hourly(
            root / "fora",
            "FORA",
            noon,
            forcing_fields(12, precip=rain[i], tair=285 + 8 * np.sin(i / 9)),
        )
        write_hourly(
            root / "noah",
            "NOAH",
            noon,
            {"SoilM_0_10cm": 15 + 10 * wetness[i], "SoilM_10_40cm": 70.0},
        )
        if i % 5 == 0:
            sm = 0.1 + 0.1 * wetness[i] + 0.002 * (60 - sand)
            write_granule(
                root / "smap",
                str(day.date()),
                am={(r, c): (v, 0) for r, c, v in zip(rows, cols, sm)},
            )
    west, north, step = -100.5, 39.5, 0.02
    lons = west + step * (np.arange(100) + 0.5)
    sand_map = np.interp(lons, [lon.min(), lon.max()], [20.0, 60.0])[None, :].repeat(100, 0)
    write_geotiff(root / "sand.tif", sand_map, west, north, step)
    return root


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
