"""Ingest of real product formats: SMAP L3 SPL3SMP HDF5, NLDAS-2 hourly NetCDF (forcing, Noah),
static GeoTIFFs. The files are written here in the products' exact structure (group and variable
names, dtypes, fill values, attributes, the real grids), small in number, full in size."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from pyproj import Geod

from model import grid
from model.dataset import FORCING_VARIABLES, KEEP_BITS, open_input
from model.errors import InputError
from model.sources import nldas
from model.sources.ingest import ingest_nldas, ingest_smap, ingest_static
from model.sources.regrid import Regridder
from model.sources.smap import Overpass, Quality
from tests.real_formats import (
    BOX,
    box_cells,
    forcing_fields,
    write_day_of_forcing,
    write_geotiff,
    write_granule,
    write_hourly,
)

# an ingested daily series is stored to KEEP_BITS significant bits: within this of itself
STORED = 2.0**-KEEP_BITS


def test_smap_value_lands_in_its_cell_and_day(tmp_path):
    cells = box_cells()
    (r, c), other = cells[0], cells[1]
    granules = tmp_path / "smap"
    granules.mkdir()
    write_granule(granules, "2015-04-01", am={(r, c): (0.234, 0), other: (0.3, 0)})
    write_granule(granules, "2015-04-03", am={(r, c): (0.111, 0)})
    out = tmp_path / "in.zarr"
    report = ingest_smap(granules, out, BOX, progress=False)
    ds = open_input(out)
    assert list(zip(ds.row.values.tolist(), ds.col.values.tolist())) == cells
    assert list(pd.DatetimeIndex(ds.time.values).strftime("%F")) == [
        "2015-04-01",
        "2015-04-02",
        "2015-04-03",
    ]
    target = ds["target"].values
    assert target[0, 0] == pytest.approx(0.234, rel=STORED)
    assert target[0, 1] == pytest.approx(0.3, rel=STORED)
    assert target[2, 0] == pytest.approx(0.111, rel=STORED)
    assert np.isnan(target[1]).all() and np.isnan(target[0, 2:]).all()
    assert np.isnan(ds["forcing"].values).all() and ds.sizes["variable"] == 8
    assert report.files_read == 2 and not report.skipped


def test_smap_quality_flags_and_overpasses(tmp_path):
    (a, b, c, d) = box_cells()[:4]
    granules = tmp_path / "smap"
    granules.mkdir()
    write_granule(
        granules,
        "2015-04-01",
        am={a: (0.20, 0), b: (0.25, 8), c: (0.30, 1), d: (0.60, 0)},
        pm={a: (0.30, 0), b: (0.35, 0)},
    )
    got = {}
    for quality in Quality:
        for overpass in Overpass:
            out = tmp_path / f"{quality.value}-{overpass.value}.zarr"
            ingest_smap(granules, out, BOX, overpass, quality, progress=False)
            got[quality.value, overpass.value] = open_input(out)["target"].values[0, :4]
    nan = np.nan
    np.testing.assert_allclose(got["recommended", "am"], [0.20, nan, nan, nan], rtol=STORED)
    np.testing.assert_allclose(got["relaxed", "am"], [0.20, 0.25, nan, nan], rtol=STORED)
    np.testing.assert_allclose(
        got["any", "am"], [0.20, 0.25, 0.30, nan], rtol=STORED
    )  # 0.6 > valid_max
    np.testing.assert_allclose(got["recommended", "pm"], [0.30, 0.35, nan, nan], rtol=STORED)
    np.testing.assert_allclose(got["recommended", "both"], [0.25, 0.35, nan, nan], rtol=STORED)
    np.testing.assert_allclose(got["relaxed", "both"], [0.25, 0.30, nan, nan], rtol=STORED)


def test_smap_bad_granules_are_skipped_with_a_reason(tmp_path):
    (r, c) = box_cells()[0]
    granules = tmp_path / "smap"
    granules.mkdir()
    for day, value in (("2015-04-01", 0.1), ("2015-04-05", 0.5)):
        write_granule(granules, day, am={(r, c): (value, 0)})
    good = write_granule(granules, "2015-04-02", am={(r, c): (0.2, 0)})
    truncated = granules / "SMAP_L3_SM_P_20150402_R18290_002.h5"  # a newer version, cut short
    truncated.write_bytes(good.read_bytes()[:5000])
    write_granule(granules, "2015-04-03", am={(1, 1): (0.3, 0)}, shape=(203, 482))
    write_granule(granules, "2015-04-04", am={(r, c): (0.4, 0)}, drop="retrieval_qual_flag")
    (granules / "readme.h5").write_bytes(b"not a granule")
    report = ingest_smap(granules, tmp_path / "in.zarr", BOX, progress=False)
    reasons = dict(report.skipped)
    assert "truncated or corrupt" in reasons[truncated.name]
    assert "not the 36 km global grid" in reasons["SMAP_L3_SM_P_20150403_R18290_001.h5"]
    assert "lacks dataset retrieval_qual_flag" in reasons["SMAP_L3_SM_P_20150404_R18290_001.h5"]
    assert "superseded" in reasons[good.name] and "name is not" in reasons["readme.h5"]
    target = open_input(tmp_path / "in.zarr")["target"].values[:, 0]
    np.testing.assert_allclose(target, [0.1, np.nan, np.nan, np.nan, 0.5], rtol=STORED)
    text = "\n".join(report.lines())
    assert "wrote 2 days" in text and "skipped 5 files" in text


def test_appending_a_day_changes_only_that_day(tmp_path):
    cells = box_cells()
    granules = tmp_path / "smap"
    granules.mkdir()
    for i, day in enumerate(pd.date_range("2015-04-01", periods=3)):
        write_granule(
            granules,
            str(day.date()),
            am={cell: (0.1 + 0.01 * i + 0.001 * k, 0) for k, cell in enumerate(cells)},
        )
    out = tmp_path / "in.zarr"
    ingest_smap(granules, out, BOX, progress=False)
    before = open_input(out)["target"].values
    write_granule(granules, "2015-04-04", am={cells[0]: (0.42, 0)})
    report = ingest_smap(granules, out, start="2015-04-04", progress=False)
    after = open_input(out)["target"].values
    assert [str(d.date()) for d in report.days_written] == ["2015-04-04"]
    assert after.shape == (4, len(cells))
    np.testing.assert_array_equal(after[:3], before)
    assert after[3, 0] == pytest.approx(0.42, rel=STORED) and np.isnan(after[3, 1:]).all()
    # a day before the first one grows the axis at its start and keeps every value
    write_granule(granules, "2015-03-30", am={cells[1]: (0.05, 0)})
    ingest_smap(granules, out, end="2015-03-30", progress=False)
    grown = open_input(out)
    assert str(pd.Timestamp(grown.time.values[0]).date()) == "2015-03-30"
    np.testing.assert_array_equal(grown["target"].values[2:], after)
    assert (
        grown["target"].values[0, 1] == pytest.approx(0.05, rel=STORED)
        and np.isnan(grown["target"].values[1]).all()
    )


def test_user_errors_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        ingest_smap(tmp_path / "nowhere", tmp_path / "in.zarr", BOX, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no SMAP_L3_SM_P"):
        ingest_smap(tmp_path / "empty", tmp_path / "in.zarr", BOX, progress=False)
    write_granule(tmp_path / "empty", "2015-04-01", am={})
    with pytest.raises(InputError, match="give --bbox"):
        ingest_smap(tmp_path / "empty", tmp_path / "in.zarr", progress=False)


# ------------------------------------------------------------------ regridding


def test_regridding_conserves_the_area_integral():
    """Over the whole NLDAS domain, sum(cell value x covered area) equals the integral of the
    source field, with source-cell areas computed independently on the WGS84 ellipsoid."""
    rows, cols = grid.bbox_cells(-126.0, 24.0, -66.0, 54.0)
    regrid = Regridder(nldas.LAT, nldas.LON, rows, cols)
    field = np.random.default_rng(0).gamma(2.0, 3.0, (nldas.N_LAT, nldas.N_LON))
    geod = Geod(ellps="WGS84")
    row_area = []
    for lat in nldas.LAT:
        south, north = lat - 0.0625, lat + 0.0625
        lons = np.linspace(0, 0.125, 65)
        ring_lon = np.concatenate([lons, lons[::-1]])
        ring_lat = np.concatenate([np.full(65, south), np.full(65, north)])
        row_area.append(abs(geod.polygon_area_perimeter(ring_lon, ring_lat)[0]))
    source_integral = (field * np.array(row_area)[:, None]).sum()
    cell_values = regrid(field)
    covered = regrid.overlap_area
    assert covered.sum() == pytest.approx(np.sum(row_area) * nldas.N_LON, rel=1e-5)
    assert np.nansum(cell_values * covered) == pytest.approx(source_integral, rel=1e-5)
    inside = covered > 0.999999 * grid.CELL_SIZE**2
    assert inside.sum() > 1500 and (covered <= grid.CELL_SIZE**2 * (1 + 1e-9)).all()
    np.testing.assert_allclose(regrid(np.full_like(field, 7.5))[covered > 0], 7.5, rtol=1e-6)


def test_regridding_uses_only_valid_source_cells():
    rows, cols = grid.bbox_cells(*BOX)
    regrid = Regridder(nldas.LAT, nldas.LON, rows, cols)
    field = np.full((nldas.N_LAT, nldas.N_LON), 3.0)
    field[:, nldas.LON < -99.5] = np.nan  # the western half of the box has no data
    field[:, nldas.LON > -95] = 100.0
    values = regrid(np.stack([field, 2 * field]))
    assert np.nanmax(np.abs(values[0] - 3.0)) < 1e-6 and np.nanmax(np.abs(values[1] - 6.0)) < 1e-6
    _, lon = grid.rowcol_to_latlon(rows, cols)
    assert np.isnan(values[0][lon + 0.25 < -99.5]).all()


# ------------------------------------------------------------------ NLDAS-2


@pytest.fixture
def dataset(tmp_path) -> Path:
    """An input dataset over BOX for 2015-04-01..02 holding a SMAP value."""
    granules = tmp_path / "smap"
    granules.mkdir()
    write_granule(granules, "2015-04-01", am={box_cells()[0]: (0.2, 0)})
    out = tmp_path / "in.zarr"
    ingest_smap(granules, out, BOX, progress=False)
    return out


def test_hourly_forcing_becomes_daily_means_on_the_cells(tmp_path, dataset):
    files = tmp_path / "fora"
    files.mkdir()
    write_day_of_forcing(files, "2015-04-01")
    report = ingest_nldas(files, dataset, "forcing", progress=False)
    assert report.files_read == 24 and not report.skipped
    ds = open_input(dataset)
    assert ds.sizes["time"] == 1
    day = ds["forcing"].sel(time="2015-04-01").to_pandas()  # cell x variable
    np.testing.assert_allclose(day["tair"], 270 + 11.5, rtol=STORED)
    np.testing.assert_allclose(day["precip"], 0.1 * 11.5, rtol=STORED)  # mean hourly rate
    np.testing.assert_allclose(day["psurf"], 95000.0, rtol=STORED)
    assert list(day.columns) == list(FORCING_VARIABLES)
    assert ds["target"].values[0, 0] == pytest.approx(0.2, rel=STORED)


def test_forcing_value_lands_in_its_cell(tmp_path, dataset):
    (r, c) = box_cells()[2]
    lat, lon = grid.rowcol_to_latlon(r, c)
    field = np.full((nldas.N_LAT, nldas.N_LON), 280.0, np.float32)
    near = (np.abs(nldas.LAT - lat) < 0.4)[:, None] & (np.abs(nldas.LON - lon) < 0.4)[None, :]
    field[near] = 300.0
    files = tmp_path / "fora"
    files.mkdir()
    write_hourly(files, "FORA", "2015-04-02T00", forcing_fields(0, tair=field))
    report = ingest_nldas(files, dataset, "forcing", min_hours=1, progress=False)
    assert report.lines()[-1] == "  days averaged over fewer than 24 hours (1): 2015-04-02 (1 h)"
    tair = open_input(dataset)["forcing"].sel(variable="tair").values
    assert np.isnan(tair[0]).all()  # 2015-04-01 had no forcing file
    assert tair[1, 2] == pytest.approx(300.0, rel=STORED)
    assert (tair[1, [0, 1, 3]] < 300.0).all()


def test_old_grib_names_and_bad_hourly_files(tmp_path, dataset):
    files = tmp_path / "fora"
    files.mkdir()
    day = pd.Timestamp("2015-04-01")
    for hour in range(20):
        write_hourly(
            files, "FORA", day + pd.Timedelta(hours=hour), forcing_fields(hour, True), True
        )
    hour20 = write_hourly(files, "FORA", day + pd.Timedelta(hours=20), forcing_fields(20))
    hour20.write_bytes(hour20.read_bytes()[:3000])
    coarse = forcing_fields(21)
    write_hourly(
        files,
        "FORA",
        day + pd.Timedelta(hours=21),
        coarse,
        lat=25.125 + 0.25 * np.arange(112),
        lon=-124.875 + 0.25 * np.arange(232),
    )
    partial = forcing_fields(22)
    del partial["Rainf"]
    write_hourly(files, "FORA", day + pd.Timedelta(hours=22), partial)
    write_hourly(files, "FORA", day + pd.Timedelta(hours=23), forcing_fields(23))
    write_hourly(files, "NOAH", day, {"SoilM_0_10cm": 20.0})
    report = ingest_nldas(files, dataset, "forcing", progress=False)
    reasons = {name[27:31]: why for name, why in report.skipped}
    assert "truncated or corrupt" in reasons["2000"]
    assert "not on the NLDAS 0.125 degree grid" in reasons["2100"]
    assert "lacks forcing variable Rainf / APCP" in reasons["2200"]
    assert any("product NOAH" in why for _, why in report.skipped)
    assert (
        report.files_read == 21
        and "fewer than 24 hours (1): 2015-04-01 (21 h)" in report.lines()[-1]
    )
    tair = open_input(dataset)["forcing"].sel(variable="tair").values[0]
    np.testing.assert_allclose(tair, 270 + (sum(range(20)) + 23) / 21, rtol=STORED)


def test_too_few_hours_leaves_the_day_untouched(tmp_path, dataset):
    files = tmp_path / "fora"
    files.mkdir()
    write_day_of_forcing(files, "2015-04-01", hours=range(3))
    report = ingest_nldas(files, dataset, "forcing", min_hours=18, progress=False)
    assert (
        "days not written, fewer than 18 readable hours (1): 2015-04-01 (3 h)" in report.lines()[-1]
    )
    assert np.isnan(open_input(dataset)["forcing"].values).all()


def test_noah_layers_convert_to_volumetric(tmp_path, dataset):
    """Noah's layers in m3/m3; every daily series is stored to KEEP_BITS bits and compressed."""
    files = tmp_path / "noah"
    files.mkdir()
    for hour in range(2):
        write_hourly(
            files,
            "NOAH",
            f"2015-04-01T{hour:02d}",
            {
                "SoilM_0_10cm": 25.0 + hour,
                "SoilM_10_40cm": 60.0,
                "SoilM_40_100cm": 150.0,
                "SoilM_100_200cm": 300.0,
                "SoilT_0_10cm": 280.0,
            },
        )
    ingest_nldas(files, dataset, "noah", min_hours=2, progress=False)
    ds = open_input(dataset)
    np.testing.assert_allclose(ds["noah"].values[0], 0.255, rtol=STORED)
    np.testing.assert_allclose(ds["noah_10_40cm"].values[0], 0.2, rtol=STORED)
    np.testing.assert_allclose(ds["noah_40_100cm"].values[0], 0.25, rtol=STORED)
    np.testing.assert_allclose(ds["noah_100_200cm"].values[0], 0.3, rtol=STORED)
    mos = tmp_path / "mos"
    mos.mkdir()
    write_hourly(mos, "MOS", "2015-04-01T00", {"SoilM_0_10cm": 31.0})
    ingest_nldas(mos, dataset, "lsm2", min_hours=1, progress=False)
    np.testing.assert_allclose(open_input(dataset)["lsm2"].values[0], 0.31, rtol=STORED)
    group = zarr.open_group(str(dataset), mode="r")
    kept = {"name": "numcodecs.bitround", "configuration": {"keepbits": KEEP_BITS}}
    for name in ("forcing", "target", "noah", "noah_10_40cm", "lsm2"):
        codecs = group[name].metadata.to_dict()["codecs"]
        assert codecs[0] == kept and codecs[-1]["name"] == "zstd", name


def test_a_dataset_takes_one_ingest_at_a_time(tmp_path, dataset):
    """A second writer fails at once, before touching the store; a killed one leaves no lock."""
    files = tmp_path / "fora"
    files.mkdir()
    write_day_of_forcing(files, "2015-04-02")
    hold = (
        "import sys; from model.dataset import sole_writer\n"
        f"with sole_writer({str(dataset)!r}):\n print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match="another process is writing to .*in.zarr"):
            ingest_nldas(files, dataset, "forcing", progress=False)
        assert open_input(dataset).sizes["time"] == 1  # untouched
    finally:
        holder.kill()
        holder.wait()
    ingest_nldas(files, dataset, "forcing", progress=False)
    assert open_input(dataset).sizes["time"] == 2


# ------------------------------------------------------------------ static GeoTIFF


def test_static_geotiff_mean_and_mode(tmp_path, dataset):
    rows, cols = grid.bbox_cells(*BOX)
    _, lon = grid.rowcol_to_latlon(rows, cols)
    west, north, step = -101.0, 40.0, 0.01
    lons = west + step * (np.arange(300) + 0.5)
    sand = np.where(lons < lon[0], 20.0, 60.0)[None, :].repeat(200, 0)
    sand[:, :5] = -9999.0
    write_geotiff(tmp_path / "sand.tif", sand, west, north, step)
    classes = np.where((np.arange(300) % 10) < 7, 12, 5)[None, :].repeat(200, 0)
    write_geotiff(tmp_path / "lc.tif", classes, west, north, step, dtype="uint8", nodata=255)
    ingest_static(tmp_path / "sand.tif", "sand", dataset)
    report = ingest_static(tmp_path / "lc.tif", "landcover", dataset, categorical=True)
    ds = open_input(dataset)
    assert [str(v) for v in ds["static_variable"].values] == ["sand", "landcover"]
    static = ds["static"].to_pandas()
    left = np.abs(lon - lon[0]) < 0.01
    # cells left of the step hold half 20 and half 60 on average; right ones are all 60
    np.testing.assert_allclose(static["sand"][left], 40.0, atol=1.5)
    np.testing.assert_allclose(static["sand"][lon > lon[0] + 0.3], 60.0, rtol=1e-6)
    assert set(static["landcover"]) == {12.0}
    assert not report.skipped
    sand[:] = 33.0
    write_geotiff(tmp_path / "sand.tif", sand, west, north, step)
    ingest_static(tmp_path / "sand.tif", "sand", dataset)
    np.testing.assert_allclose(open_input(dataset)["static"].sel(static_variable="sand"), 33.0)
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(InputError, match="cannot read bad.tif"):
        ingest_static(tmp_path / "bad.tif", "clay", dataset)


def test_static_attributes_survive_a_failed_write(tmp_path, dataset, monkeypatch):
    """A write that fails part-way (disk full, a killed process) keeps the attributes already
    stored: they used to be deleted before the new arrays were written."""
    rows, cols = grid.bbox_cells(*BOX)
    west, north, step = -101.0, 40.0, 0.01
    write_geotiff(tmp_path / "sand.tif", np.full((200, 300), 25.0), west, north, step)
    ingest_static(tmp_path / "sand.tif", "sand", dataset)
    before = open_input(dataset)["static"].values.copy()

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(zarr.Array, "__setitem__", disk_full)
    monkeypatch.setattr(xr.Dataset, "to_zarr", disk_full)
    write_geotiff(tmp_path / "clay.tif", np.full((200, 300), 10.0), west, north, step)
    with pytest.raises(OSError):
        ingest_static(tmp_path / "clay.tif", "clay", dataset)
    monkeypatch.undo()
    after = open_input(dataset)
    np.testing.assert_array_equal(after["static"].sel(static_variable="sand"), before[:, 0])
    assert len(rows) == len(cols) == after.sizes["cell"]


def test_nldas_days_append_to_a_hydrodl_dataset(tmp_path, conus412):
    """A dataset made from the real hydroDL sample (7 forcing variables, its own chunking) takes
    new NLDAS days after its end; its own days stay identical."""
    from model.dataset import write_input
    from model.sources.hydrodl import read_hydrodl

    original = read_hydrodl(conus412)
    write_input(original, tmp_path / "h.zarr")
    files = tmp_path / "fora"
    files.mkdir()
    write_day_of_forcing(files, "2018-04-02", hours=range(2))
    report = ingest_nldas(files, tmp_path / "h.zarr", "forcing", progress=False)
    assert "  the dataset has no slot for psurf; not stored" in report.lines()
    ds = open_input(tmp_path / "h.zarr")
    n = original.sizes["time"]
    assert ds.sizes["time"] == n + 2 and str(pd.Timestamp(ds.time.values[n]).date()) == "2018-04-01"
    np.testing.assert_array_equal(ds["forcing"].values[:n], original["forcing"].values)
    np.testing.assert_array_equal(ds["target"].values[:n], original["target"].values)
    assert np.isnan(ds["forcing"].values[n]).all()
    day = ds["forcing"].values[n + 1]
    np.testing.assert_allclose(
        day[:, list(ds["variable"].values).index("tair")], 270.5, rtol=STORED
    )
    np.testing.assert_allclose(
        day[:, list(ds["variable"].values).index("precip")], 0.05, rtol=STORED
    )


# ------------------------------------------------------------------ 9 km: SPL3SMP_E and regridding


@pytest.fixture
def dataset_9km(tmp_path) -> Path:
    """A 9 km input dataset over BOX for 2015-04-01, created from an SPL3SMP_E granule."""
    granules = tmp_path / "smap_e"
    granules.mkdir()
    write_granule(granules, "2015-04-01", am={box_cells(grid.M09)[0]: (0.2, 0)}, on=grid.M09)
    out = tmp_path / "in9.zarr"
    ingest_smap(granules, out, BOX, progress=False, on=grid.M09)
    return out


def test_spl3smp_e_values_land_in_their_9km_cells(tmp_path):
    cells = box_cells(grid.M09)
    (a, b, c, d) = cells[0], cells[17], cells[-1], cells[40]
    granules = tmp_path / "smap_e"
    granules.mkdir()
    write_granule(
        granules,
        "2015-04-01",
        am={a: (0.21, 0), b: (0.32, 0), d: (0.4, 1)},  # d: retrieval not recommended
        pm={a: (0.25, 0), c: (0.15, 0)},
        on=grid.M09,
    )
    write_granule(granules, "2015-04-02", am={a: (0.3, 0)})  # a 36 km SPL3SMP granule
    write_granule(granules, "2015-04-03", am={(1, 1): (0.3, 0)}, shape=(406, 964), on=grid.M09)
    out = tmp_path / "in9.zarr"
    report = ingest_smap(granules, out, BOX, Overpass.both, progress=False, on=grid.M09)
    ds = open_input(out)
    assert ds.attrs["grid"] == "EASE2 9 km EPSG:6933"
    rows, cols = grid.M09.bbox_cells(*BOX)
    assert len(rows) > 100
    np.testing.assert_array_equal(ds.row.values, rows)
    np.testing.assert_array_equal(ds.col.values, cols)
    lat, lon = grid.M09.rowcol_to_latlon(rows, cols)
    np.testing.assert_allclose(ds.lat.values, lat)
    np.testing.assert_allclose(ds.lon.values, lon)
    target = pd.Series(ds["target"].values[0], index=list(zip(rows.tolist(), cols.tolist())))
    assert target[a] == pytest.approx(0.23, rel=STORED)  # the mean of both overpasses
    assert target[b] == pytest.approx(0.32, rel=STORED)
    assert target[c] == pytest.approx(0.15, rel=STORED)
    assert target.notna().sum() == 3 and np.isnan(target[d])
    reasons = dict(report.skipped)
    assert "name is not SMAP_L3_SM_P_E_YYYYMMDD" in reasons["SMAP_L3_SM_P_20150402_R18290_001.h5"]
    assert (
        "is (406, 964), not the 9 km global grid (1624, 3856)"
        in (reasons["SMAP_L3_SM_P_E_20150403_R18290_001.h5"])
    )


def test_mixed_grids_are_refused_in_one_line(tmp_path, dataset_9km):
    granules = tmp_path / "smap36"
    granules.mkdir()
    write_granule(granules, "2015-04-01", am={box_cells()[0]: (0.2, 0)})
    thirty_six = tmp_path / "in36.zarr"
    ingest_smap(granules, thirty_six, BOX, progress=False)
    with pytest.raises(InputError) as caught:
        ingest_smap(granules, thirty_six, progress=False, on=grid.M09)
    assert str(caught.value) == (
        f"--grid is on the 9 km grid but the dataset {thirty_six} is on the 36 km grid; "
        "use one grid throughout"
    )
    files = tmp_path / "fora"
    files.mkdir()
    write_hourly(files, "FORA", "2015-04-01T00", forcing_fields(0))
    with pytest.raises(InputError, match="--grid is on the 36 km grid but the dataset .* 9 km"):
        ingest_nldas(files, dataset_9km, "forcing", progress=False, on=grid.M36)


def test_a_linear_nldas_field_keeps_its_value_at_9km_cell_centres(tmp_path, dataset_9km):
    """Area-weighted regridding of a field linear in lon and lat: each 9 km cell gets the value
    at its centre, to within what 1/8 degree source cells resolve: the slope times half the
    difference between the source cell and the 9 km cell, in each direction."""
    lon_slope, lat_slope = 2.0, 3.0  # K per degree
    field = (
        280.0 + lon_slope * (nldas.LON[None, :] + 100.0) + lat_slope * (nldas.LAT[:, None] - 38.0)
    )
    files = tmp_path / "fora"
    files.mkdir()
    write_hourly(files, "FORA", "2015-04-01T00", forcing_fields(0, tair=field))
    ingest_nldas(files, dataset_9km, "forcing", progress=False)
    ds = open_input(dataset_9km)
    tair = ds["forcing"].sel(variable="tair").values[0]
    expected = 280.0 + lon_slope * (ds.lon.values + 100.0) + lat_slope * (ds.lat.values - 38.0)
    cell_lon = grid.M09.cell_size / (
        grid.lonlat_to_xy(1.0, 38.5)[0] - grid.lonlat_to_xy(0, 38.5)[0]
    )
    y = grid.lonlat_to_xy([0.0, 0.0], [38.0, 39.0])[1]
    cell_lat = grid.M09.cell_size / (y[1] - y[0])
    bound = (lon_slope * (0.125 - cell_lon) + lat_slope * (0.125 - cell_lat)) / 2
    error = np.abs(tair - expected)
    stored = expected * STORED  # what keeping KEEP_BITS significant bits adds
    assert 0.08 < bound < 0.09 and (error < bound + stored).all()
    assert error.mean() < (bound + stored.mean()) / 2
    assert np.ptp(tair) > 4.0  # the field varies across the box: 2 K east-west, 3 K north-south


def test_static_geotiff_at_9km(tmp_path, dataset_9km):
    west, north, step = -101.0, 40.0, 0.01
    lons = west + step * (np.arange(300) + 0.5)
    write_geotiff(
        tmp_path / "sand.tif", (10.0 * (lons + 101.0))[None, :].repeat(200, 0), west, north, step
    )
    report = ingest_static(tmp_path / "sand.tif", "sand", dataset_9km)
    ds = open_input(dataset_9km)
    sand = ds["static"].sel(static_variable="sand").values
    np.testing.assert_allclose(sand, 10.0 * (ds.lon.values + 101.0), atol=0.05)
    assert not report.skipped and np.ptp(sand) > 8.0
