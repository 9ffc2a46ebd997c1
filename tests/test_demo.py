"""The demo's promises that need no training: stages are timed and a re-run with the same
recipe reuses what was built, a changed recipe rebuilds from the first stage it touches, and
training takes the cores that are not busy."""

import os
import signal
import subprocess
import sys
import time

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


def test_a_resumed_stage_keeps_its_outputs_only_when_made_from_the_same_inputs(tmp_path):
    cube, found = tmp_path / "cube", []

    def work():
        found.append((cube / "block").exists())  # a block of an earlier run, to resume
        cube.mkdir(exist_ok=True)
        (cube / "block").touch()

    def extend(recipe, redo_before=False):
        stages = demo.Stages(tmp_path, recipe)
        stages.redo = redo_before
        stages.run("extend", "extend", [cube], work, resumes=True)

    extend({"end": 1})
    (tmp_path / ".stages" / "extend.json").unlink()  # interrupted
    extend({"end": 1})
    extend({"end": 2})  # another recipe: the cube there is not this one's
    (tmp_path / ".stages" / "extend.json").unlink()
    extend({"end": 2}, redo_before=True)  # a stage before was redone: new inputs
    assert found == [False, True, False, False]


def test_busy_cores_are_read_over_a_short_window_not_the_lagging_load_average(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.0, 1.0))  # a job that just ended
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert 0.0 <= demo.busy_cores(0.1) <= 2  # /proc/stat itself, where there is one
    samples = iter([[100, 0, 50, 800, 10, 0, 0], [130, 0, 60, 950, 20, 0, 0]])
    monkeypatch.setattr(demo, "_cpu_times", lambda: next(samples))
    assert demo.busy_cores(0.01) == pytest.approx(0.4)  # 40 of 200 ticks busy, of 2 cores


def test_training_threads_leave_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("SMAPX_TORCH_THREADS", "0")
    demo.get_settings.cache_clear()
    monkeypatch.setattr(demo, "busy_cores", lambda: 0.1)
    assert demo.training_threads() == 2
    monkeypatch.setattr(demo, "busy_cores", lambda: 4.7)
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


def as_from_a_terminal() -> None:
    """SIGINT at its default and not blocked, as a shell's foreground command has it: a child
    inherits an ignored or blocked SIGINT, and Python then raises no KeyboardInterrupt. In two
    whole-suite runs the training went on for 40 s of epochs after the signal, as it does under
    `trap '' INT`, while alone it stopped at once."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.integration
def test_ctrl_c_stops_a_training_within_5_s_and_says_so(demo_cube, tmp_path):
    command = [sys.executable, "-c", "from cli.main import main; main()", "train"]
    inputs = str(demo_cube.parent / "world" / "input.zarr")
    args = ["--input", inputs, "--start", "2015-04-01", "--end", "2017-03-31"]
    proc = subprocess.Popen(
        [*command, *args, "--out", str(tmp_path / "m"), "--max-epochs", "200"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "SMAPX_TORCH_THREADS": "1"},
        preexec_fn=as_from_a_terminal,
    )
    seen, deadline = b"", time.monotonic() + 120
    while b"train seed" not in seen:  # the progress bar: epochs are running
        assert proc.poll() is None and time.monotonic() < deadline, seen
        seen += os.read(proc.stderr.fileno(), 4096)
    proc.send_signal(signal.SIGINT)
    began = time.monotonic()
    _, rest = proc.communicate(timeout=60)
    assert time.monotonic() - began < 5
    assert proc.returncode == 130 and rest.decode().strip().endswith("aborted")
    assert not (tmp_path / "m").exists()


def test_a_second_demo_in_a_folder_stops_with_one_line(tmp_path):
    command = [sys.executable, "-c", "from cli.main import main; main()", "demo"]
    with demo.only_demo_in(tmp_path):
        second = subprocess.run(
            [*command, "--out", str(tmp_path), "--no-serve"], capture_output=True, text=True
        )
    assert second.returncode == 1
    assert second.stderr.startswith(f"error: another smapx demo (pid {os.getpid()}) is running")
    assert len(second.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # nothing else touched


def test_a_live_demo_has_the_recipe_of_the_built_one(tmp_path):
    built, live = demo.DemoConfig(out=tmp_path), demo.DemoConfig(out=tmp_path, live_days=5)
    assert live.recipe() == built.recipe()  # so its world, model and cube are reused


@pytest.mark.integration
def test_a_built_cube_is_complete_for_a_live_demo_and_needs_growth_for_a_later_end(demo_cube):
    region = {"bbox": (-99.0, 36.0, -96.0, 39.0), "max_epochs": 1}
    live = demo.DemoConfig(out=demo_cube.parent, live_days=5, **region)
    assert demo.cube_is_built(demo_cube, live)
    later = demo.DemoConfig(out=demo_cube.parent, end="2021-01-31", **region)
    assert not demo.cube_is_built(demo_cube, later)
