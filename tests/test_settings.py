"""The settings object: values from SMAPX_* variables, and what follows from them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_settings(env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from cli.main import main; main()", "settings"]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SMAPX_RATE_LIMIT_PER_MINUTE", "abc", "SMAPX_RATE_LIMIT_PER_MINUTE=abc: Input should be"),
        ("SMAPX_STORAGE_OPTIONS", "{x", "SMAPX_STORAGE_OPTIONS: not valid JSON"),
    ],
)
def test_a_bad_setting_is_one_line_naming_its_variable(variable, value, message):
    done = run_settings({variable: value})
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_settings_say_which_redis_is_used_when_none_is_configured(redis_url):
    configured = run_settings({"SMAPX_REDIS_URL": redis_url})
    assert f"SMAPX_REDIS_URL={redis_url}\n" in configured.stdout
    env = {k: v for k, v in os.environ.items() if k != "SMAPX_REDIS_URL"}
    command = [sys.executable, "-c", "from cli.main import main; main()", "settings"]
    unset = subprocess.run(command, env=env, capture_output=True, text=True).stdout
    line = next(v for v in unset.splitlines() if v.startswith("SMAPX_REDIS_URL="))
    assert line.startswith("SMAPX_REDIS_URL=unset: ") and "redis://localhost:6379/0" in line
    assert "None" not in unset
