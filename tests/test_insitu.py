"""In situ station sources: the real ISMN samples (both layouts, zipped and unpacked), a plain CSV,
the twin world's stations, and archives with broken files."""

import zipfile

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from model import world
from model.errors import InputError
from model.evaluation.insitu import daily_means, read_csv, read_stations, write_csv

HEADER_VALUES = "Data_header_values.zip"
CEOP = "Data_ceop_sep_ARM-1_20170810_20180809.zip"
ARM1 = "COSMOS/ARM-1/0.000-0.190/Cosmic-ray-Probe"
AAMU = "SCAN/AAMU-jtg/0.050-0.050/Hydraprobe-Analog-(2.5-Volt)"


@pytest.fixture(scope="module")
def ismn(shared_data):
    path = shared_data / "ismn"
    if not path.is_dir():
        pytest.skip(f"ISMN samples not present at {path}")
    return path


@pytest.fixture(scope="module")
def ceop(ismn):
    return read_stations(ismn / CEOP)


@pytest.fixture(scope="module")
def header_values(ismn):
    """The header+values sample flags its values U (unchecked), so U is accepted here."""
    return read_stations(ismn / HEADER_VALUES, keep_flags=("G", "U"))


def test_ceop_archive_stations_coordinates_and_depths(ceop):
    assert sorted(ceop.sensors["station"]) == ["COSMOS/ARM-1", "COSMOS/Barrow-ARM"]
    arm = ceop.sensors.loc[ARM1]
    assert (arm["lat"], arm["lon"]) == (36.6054, -97.4878)
    assert (arm["depth_from"], arm["depth_to"]) == (0.0, 0.19)
    assert arm["depth_m"] == pytest.approx(0.095)
    assert ceop.sensors.loc["COSMOS/Barrow-ARM/0.000-0.210/Cosmic-ray-Probe", "lat"] == 71.3298
    assert ceop.problems == []


def test_ceop_daily_mean_keeps_only_good_flags(ceop):
    # 2017-08-28 in the raw file: 24 hourly values, 11:00 (0.137) and 12:00 (0.138) flagged D05.
    good = [
        0.124,
        0.124,
        0.124,
        0.125,
        0.126,
        0.131,
        0.133,
        0.135,
        0.134,
        0.134,
        0.135,
        0.136,
        0.131,
        0.130,
        0.130,
        0.123,
        0.120,
        0.119,
        0.117,
        0.118,
        0.112,
        0.111,
    ]
    value = ceop.values.loc["2017-08-28", ARM1]
    assert value == pytest.approx(np.mean(good), abs=1e-6)
    assert value != pytest.approx(np.mean(good + [0.137, 0.138]), abs=1e-6)
    # 2017-08-10: all 24 hours good.
    day = [0.141, 0.139, 0.139, 0.140, 0.147, 0.147, 0.171, 0.189, 0.199, 0.205, 0.233, 0.252]
    day += [0.242, 0.244, 0.249, 0.251, 0.253, 0.254, 0.252, 0.251, 0.252, 0.251, 0.255, 0.251]
    assert ceop.values.loc["2017-08-10", ARM1] == pytest.approx(np.mean(day), abs=1e-6)
    # 2017-12-08 has only 10 good hours: below the 12-hour minimum, so no daily mean.
    assert pd.Timestamp("2017-12-08") not in ceop.values[ARM1].dropna().index
    assert ceop.values[ARM1].count() == 301


def test_min_count_is_honoured_on_real_data(ismn):
    lenient = read_stations(ismn / CEOP, min_count=10)
    hours = [0.088, 0.089, 0.090, 0.091, 0.092, 0.091, 0.092, 0.090, 0.099, 0.098]
    assert lenient.values.loc["2017-12-08", ARM1] == pytest.approx(np.mean(hours), abs=1e-6)


def test_unpacked_folder_reads_like_the_zip(ismn, ceop, tmp_path):
    with zipfile.ZipFile(ismn / CEOP) as archive:
        archive.extractall(tmp_path)
    unpacked = read_stations(tmp_path)
    pd.testing.assert_frame_equal(unpacked.values, ceop.values)
    assert not (tmp_path / "python_metadata").exists()


def test_header_values_archive(header_values):
    sensors = header_values.sensors
    assert len(sensors) == 8
    assert sorted(sensors["network"].unique()) == ["MAQU", "SCAN", "SOILSCAPE"]
    assert (sensors["depth_m"] == 0.05).all()
    aamu = sensors.loc[AAMU]
    assert (aamu["lat"], aamu["lon"]) == (34.783, -86.55)
    # 2007-03-23: 24 hourly values, all flagged U.
    hours = [0.177, 0.176, 0.175, 0.174, 0.174, 0.173, 0.174, 0.173, 0.172, 0.173, 0.172, 0.172]
    hours += [0.173, 0.173, 0.172, 0.172, 0.173, 0.170, 0.171, 0.169, 0.166, 0.164, 0.163, 0.161]
    assert header_values.values.loc["2007-03-23", AAMU] == pytest.approx(np.mean(hours), abs=1e-6)
    # 2007-03-22 starts at 21:00: three hours are not a day.
    assert pd.Timestamp("2007-03-22") not in header_values.values[AAMU].dropna().index


def test_good_flag_only_rejects_unchecked_values_and_says_why(ismn):
    strict = read_stations(ismn / HEADER_VALUES)
    assert strict.values.count().sum() == 0
    assert len(strict.problems) == 8
    assert all(
        "no daily values with flags G" in p["problem"] and "U" in p["problem"]
        for p in strict.problems
    )


def test_broken_file_is_reported_and_the_rest_read(ismn, tmp_path):
    with zipfile.ZipFile(ismn / HEADER_VALUES) as archive:
        archive.extractall(tmp_path)
    broken = next((tmp_path / "SCAN" / "Abrams").glob("*.stm"))
    broken.write_text("not an ISMN file\nat all\n")
    stations = read_stations(tmp_path, keep_flags=("G", "U"))
    assert len(stations.sensors) == 7
    assert "SCAN/Abrams" not in set(stations.sensors["station"])
    assert [p["station"] for p in stations.problems] == ["SCAN/Abrams"]
    assert "malformed" in stations.problems[0]["problem"]
    assert stations.values[AAMU].count() > 1000


def test_daily_means_need_min_count_of_hourly_values():
    hours = pd.date_range("2020-01-01", periods=48, freq="h")
    values = pd.Series(np.arange(48, dtype=float), index=hours)
    values.iloc[11:24] = np.nan  # day one keeps 11 hours, day two all 24
    daily = daily_means(values, min_count=12)
    assert list(daily.index) == [pd.Timestamp("2020-01-02")]
    assert daily.iloc[0] == pytest.approx(np.mean(np.arange(24, 48)))
    assert daily_means(values, min_count=11).iloc[0] == pytest.approx(5.0)


def test_daily_values_pass_with_one_sample_a_day():
    days = pd.date_range("2020-01-01", periods=5, freq="D")
    daily = daily_means(pd.Series([0.1, 0.2, np.nan, 0.4, 0.5], index=days), min_count=12)
    np.testing.assert_allclose(daily.to_numpy(), [0.1, 0.2, 0.4, 0.5], rtol=1e-6)


def test_plain_csv(tmp_path):
    hours = pd.date_range("2021-06-01", periods=36, freq="h")
    rows = [
        {
            "station": "A",
            "lat": 38.0,
            "lon": -98.0,
            "depth": 0.05,
            "time": t,
            "value": 0.2 + i / 1000,
        }
        for i, t in enumerate(hours)
    ]
    rows += [
        {"station": "B", "lat": 39.0, "lon": -99.0, "depth": 0.5, "time": d, "value": v}
        for d, v in zip(["2021-06-01", "2021-06-02"], [0.3, "bad"])
    ]
    rows += [
        {
            "station": "C",
            "lat": 123.0,
            "lon": -99.0,
            "depth": 0.05,
            "time": "2021-06-01",
            "value": 0.1,
        }
    ]
    path = tmp_path / "stations.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    stations = read_stations(path)
    assert sorted(stations.sensors["station"]) == ["A", "B"]
    a = stations.sensors.index[stations.sensors["station"] == "A"][0]
    b = stations.sensors.index[stations.sensors["station"] == "B"][0]
    assert stations.values.loc["2021-06-01", a] == pytest.approx(0.2 + 11.5 / 1000, abs=1e-6)
    assert stations.values.loc["2021-06-02", a] == pytest.approx(0.2 + 29.5 / 1000, abs=1e-6)
    assert stations.values[b].dropna().to_dict() == {pd.Timestamp("2021-06-01"): pytest.approx(0.3)}
    assert stations.sensors.loc[b, "depth_m"] == 0.5
    assert stations.problems == [{"station": "C", "problem": "bad coordinates (123.0, -99.0)"}]


def test_csv_round_trip(tmp_path, ceop):
    write_csv(ceop, tmp_path / "ceop.csv")
    again = read_csv(tmp_path / "ceop.csv")
    assert len(again.sensors) == 2
    arm = again.sensors.index[again.sensors["station"] == "COSMOS/ARM-1"][0]
    np.testing.assert_allclose(
        again.values[arm].dropna().to_numpy(), ceop.values[ARM1].dropna().to_numpy(), rtol=1e-6
    )


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_stations(tmp_path / "missing.zip")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="lacks column"):
        read_stations(tmp_path / "bad.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="ISMN archive"):
        read_stations(tmp_path / "empty")


def test_twin_world_stations(tmp_path):
    folder = tmp_path / "W" / "stations"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "sensor": ["D1-01_005cm", "S001_050cm"],
            "station": ["D1-01", "S001"],
            "network": ["dense", "sparse"],
            "lat": [35.6, 36.0],
            "lon": [-98.2, -97.0],
            "depth_m": [0.05, 0.5],
            "row": [84, 83],
            "col": [219, 222],
        }
    ).to_csv(folder / "sensors.csv", index=False)
    time = pd.date_range("2016-01-01", periods=3)
    xr.DataArray(
        np.array([[0.2, 0.3], [np.nan, 0.31], [0.22, 0.32]], np.float32),
        coords={"time": time, "sensor": ["D1-01_005cm", "S001_050cm"]},
        dims=("time", "sensor"),
        name="value",
    ).to_netcdf(folder / "values.nc")
    assert world.read_world_stations(tmp_path / "W")[0].shape[0] == 2
    stations = read_stations(tmp_path / "W")
    assert list(stations.sensors["kind"]) == ["dense", "sparse"]
    assert stations.sensors.loc["S001_050cm", "depth_m"] == 0.5
    assert stations.values["D1-01_005cm"].count() == 2
    assert stations.values.loc["2016-01-03", "S001_050cm"] == pytest.approx(0.32)
