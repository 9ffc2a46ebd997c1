"""The hydroDL CSV reader, on the real 412-pixel sample and on small folders written here."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model import grid
from model.dataset import open_input, write_input
from model.errors import InputError
from model.sources.hydrodl import read_hydrodl

SMAPX = [sys.executable, "-c", "from cli.main import main; main()"]


def write_database(root: Path, n_pixel=3, years=(2015, 2016), smap_years=(2015,)) -> Path:
    """A tiny hydroDL database: pixel p, day d of a variable = 100 * p + d (SMAP: 0.01 * that)."""
    lat = np.array([38.0, 40.0, 42.0][:n_pixel])
    lon = np.array([-100.0, -98.0, -96.0][:n_pixel])
    rows, cols = grid.latlon_to_rowcol(lat, lon)
    clat, clon = grid.rowcol_to_latlon(rows, cols)
    root.mkdir(parents=True)
    pd.DataFrame({"lat": clat, "lon": clon}).to_csv(root / "crd.csv", header=False, index=False)
    (root / "const").mkdir()
    for name in ("Sand", "Clay"):
        pd.DataFrame(np.arange(n_pixel) + 10.0).to_csv(
            root / "const" / f"{name}.csv", header=False, index=False
        )
    for year in years:
        days = pd.date_range(f"{year}-04-01", f"{year + 1}-03-31")
        folder = root / str(year)
        folder.mkdir()
        (folder / "timeStr.csv").write_text("\n".join(d.strftime("%Y-%m-%d") for d in days) + "\n")
        values = 100.0 * np.arange(n_pixel)[:, None] + np.arange(len(days))[None, :]
        for name in ("APCP_FORA", "TMP_2_FORA"):
            pd.DataFrame(values).to_csv(folder / f"{name}.csv", header=False, index=False)
        if year in smap_years:
            smap = values * 0.01
            smap[:, 1] = -9999
            pd.DataFrame(smap).to_csv(folder / "SMAP_AM.csv", header=False, index=False)
    return root


def test_small_database_lands_in_the_right_place(tmp_path):
    ds = read_hydrodl(write_database(tmp_path / "db"))
    assert ds.sizes == {"time": 731, "cell": 3, "variable": 2, "static_variable": 2}
    assert list(ds.variable.values) == ["precip", "tair"]
    assert (
        str(ds.time.values[0])[:10] == "2015-04-01" and str(ds.time.values[-1])[:10] == "2017-03-31"
    )
    # pixel 2, day 5 of the 2016 folder (2016-04-06) = 200 + 5
    assert float(ds.forcing.sel(time="2016-04-06", variable="tair").isel(cell=2)) == 205.0
    assert float(ds.target.sel(time="2015-04-04").isel(cell=1)) == pytest.approx(1.03)
    assert np.isnan(ds.target.sel(time="2015-04-02").values).all()
    assert np.isnan(ds.target.sel(time="2016-04-02").values).all()
    assert ds.static.sel(static_variable="sand").values.tolist() == [10.0, 11.0, 12.0]
    np.testing.assert_array_equal(
        ds.row.values, grid.latlon_to_rowcol([38.0, 40.0, 42.0], [-100.0, -98.0, -96.0])[0]
    )


def test_round_trip_through_zarr(tmp_path):
    ds = read_hydrodl(write_database(tmp_path / "db"))
    write_input(ds, tmp_path / "input.zarr")
    back = open_input(tmp_path / "input.zarr")
    np.testing.assert_array_equal(back.forcing.values, ds.forcing.values)
    np.testing.assert_array_equal(back.target.values, ds.target.values)
    assert list(back.static_variable.values) == ["clay", "sand"]


def test_wrong_column_count_is_a_clear_error(tmp_path):
    root = write_database(tmp_path / "db")
    bad = pd.read_csv(root / "2016" / "TMP_2_FORA.csv", header=None).iloc[:, :-3]
    bad.to_csv(root / "2016" / "TMP_2_FORA.csv", header=False, index=False)
    with pytest.raises(
        InputError, match=r"TMP_2_FORA.csv has 3 rows x 362 columns, expected 3 pixels x 365 days"
    ):
        read_hydrodl(root)


def test_missing_folder_and_crd(tmp_path):
    with pytest.raises(InputError, match="hydroDL folder not found"):
        read_hydrodl(tmp_path / "nowhere")
    root = write_database(tmp_path / "db")
    (root / "crd.csv").unlink()
    with pytest.raises(InputError, match="crd.csv"):
        read_hydrodl(root)


def test_cli_reports_bad_input_in_one_line(tmp_path):
    root = write_database(tmp_path / "db")
    (root / "2015" / "APCP_FORA.csv").write_text("1,2\n3,4\n")
    run = subprocess.run(
        [*SMAPX, "ingest", "hydrodl", str(root), "--out", str(tmp_path / "i.zarr")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.strip().startswith("error: ") and "APCP_FORA.csv" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_real_conus412_sample(conus412):
    ds = read_hydrodl(conus412)
    assert ds.sizes["cell"] == 412 and ds.sizes["time"] == 1096
    assert set(ds.variable.values) == {
        "precip",
        "tair",
        "spfh",
        "swdown",
        "lwdown",
        "wind_u",
        "wind_v",
    }
    assert {"sand", "clay", "silt", "bulk", "capa", "ndvi"} <= set(ds.static_variable.values)
    first = pd.read_csv(conus412 / "2015" / "SMAP_AM.csv", header=None, nrows=1).to_numpy()[0]
    assert float(ds.target.isel(cell=0, time=0)) == pytest.approx(first[0], rel=1e-6)
    # SMAP exists in the 2015 year only; 2016 and 2017 are forcing-only years
    assert ds.target.sel(time=slice("2016-04-01", None)).isnull().all()
    valid = ds.target.sel(time=slice(None, "2016-03-31")).values
    assert np.nanmin(valid) > 0.0 and np.nanmax(valid) <= 0.6
    assert ds.forcing.notnull().all()
