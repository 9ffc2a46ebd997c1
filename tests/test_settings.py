"""The settings object: values from SMAPX_* variables, and what follows from them."""

from pathlib import Path

from model.settings import Settings


def test_job_results_live_under_the_data_dir_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("SMAPX_JOBS_DIR", raising=False)
    monkeypatch.setenv("SMAPX_DATA_DIR", "/srv/smapx")
    assert Settings().jobs_dir == Path("/srv/smapx/jobs")
    monkeypatch.setenv("SMAPX_JOBS_DIR", "/scratch/results")
    assert Settings().jobs_dir == Path("/scratch/results")
    monkeypatch.delenv("SMAPX_DATA_DIR")
    monkeypatch.delenv("SMAPX_JOBS_DIR")
    assert Settings().jobs_dir == Path("data/jobs")
