"""The demo's promises that need no training: stages are timed and a re-run with the same
recipe reuses what was built, a changed recipe rebuilds from the first stage it touches, and
training takes the cores that are not busy."""

import os

import pytest

from cli import demo


def run_all(out, recipe, calls):
    stages = demo.Stages(out, recipe)
    for name in ("world", "train", "extend"):
        target = out / name

        def work(name=name, target=target):
            calls.append(name)
            target.mkdir()
            (target / "made").write_text(name)

        stages.run(name, name, [target], work)
    return stages


def test_rerun_reuses_and_changes_rebuild_from_the_first_stage_they_touch(tmp_path, capsys):
    calls = []
    first = run_all(tmp_path, {"stride": 1}, calls)
    assert calls == ["world", "train", "extend"]
    assert set(first.times) == {"world", "train", "extend"}
    run_all(tmp_path, {"stride": 1}, calls)
    assert calls == ["world", "train", "extend"]  # nothing redone
    assert "already built, reused" in capsys.readouterr().out

    (tmp_path / ".stages" / "train.json").unlink()  # training interrupted half way
    run_all(tmp_path, {"stride": 1}, calls)
    assert calls[3:] == ["train", "extend"]

    run_all(tmp_path, {"stride": 2}, calls)
    assert calls[5:] == ["world", "train", "extend"]


def test_training_threads_leave_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("SMAPX_TORCH_THREADS", "0")
    demo.get_settings.cache_clear()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert demo.training_threads() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (4.7, 4.0, 3.0))
    assert demo.training_threads() == 1
    monkeypatch.setenv("SMAPX_TORCH_THREADS", "3")
    demo.get_settings.cache_clear()
    assert demo.training_threads() == 3
    demo.get_settings.cache_clear()


@pytest.mark.parametrize(
    ("bbox", "expected"), [((-104.0, 33.0, -92.0, 41.0), "--bbox=-104,33,-92,41"), (None, "conus")]
)
def test_serve_again_command_reuses_the_same_recipe(tmp_path, capsys, bbox, expected):
    config = demo.DemoConfig(out=tmp_path, bbox=bbox, stride=3)
    demo.say_how_to_serve(tmp_path / "extended.zarr", config)
    text = capsys.readouterr().out
    assert expected in text and "--stride 3" in text and "http://localhost:8000" in text
