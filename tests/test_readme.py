"""The README's HTTP examples run against a real server on the demo's cube (made by the demo's
own stages over a small region), with a real worker for the bulk jobs: every `curl` answers the
status its comment names (200 where it names none) and the Python examples run, so the README
and the demo cannot drift apart. The `smapx` command lines are the CLI's tests' business."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.served import start_server, start_worker

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[1] / "README.md"


def code_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the README."""
    return re.findall(r"```(\w*)\n(.*?)```", README.read_text(), re.S)


def commands(text: str) -> list[str]:
    """The shell commands of a block: a line ending in a backslash, or inside an open quote,
    goes on on the next."""
    found, buffer, joiner = [], "", ""
    for line in text.splitlines():
        buffer = f"{buffer}{joiner}{line}"
        if buffer.endswith("\\"):
            buffer, joiner = buffer[:-1], " "
            continue
        joiner = "\n"  # inside a quote
        if buffer.split("  #")[0].count("'") % 2 == 0:
            found.append(buffer)
            buffer, joiner = "", ""
    return found


def examples() -> list[tuple[str, int]]:
    """(command, expected status) of every example that reaches the server, in order (`a; b`
    are two); Python code has status 0."""
    found = []
    for language, text in code_blocks():
        if language == "python":
            if "localhost:8000" in text:
                found.append((text, 0))
            continue
        for command in commands(text):
            code, _, comment = command.partition("  #")
            if "localhost:8000" not in code or not code.startswith(("curl ", "python ")):
                continue
            status = re.search(r"\b([1-5]\d\d)\b", comment)
            for part in re.split(r";\s+(?=curl )", code.strip()):
                found.append((part, int(status.group(1)) if status else 200))
    return found


@pytest.fixture(scope="module")
def demo_server(demo_cube, redis_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    env = {
        "SMAPX_REDIS_URL": redis_url,
        "SMAPX_JOBS_DIR": str(folder / "jobs"),
        "SMAPX_CUBES": "[]",
        "SMAPX_TORCH_THREADS": "1",
    }
    worker = start_worker(env, f"readme-test-{os.getpid()}@%h")
    server, url = start_server([demo_cube], env)
    try:
        yield url, folder
    finally:
        for proc in (server, worker):
            proc.terminate()
        for proc in (server, worker):
            proc.wait(30)


def run_curl(command: str, url: str, cwd: Path) -> tuple[int, bytes]:
    """The command as written (its URL pointed at the test server); its status and body."""
    writes = re.search(r"\s-(o|O)\s", command)
    options = "-sS -w '\\n%{http_code}'" + ("" if writes else " -o body")
    done = subprocess.run(
        [
            "bash",
            "-c",
            command.replace("localhost:8000", url.removeprefix("http://")).replace(
                "curl ", f"curl {options} ", 1
            ),
        ],
        cwd=cwd,
        capture_output=True,
    )
    assert done.returncode == 0, (command, done.stderr.decode())
    status = int(done.stdout.decode().split()[-1])
    return status, (b"" if writes else (cwd / "body").read_bytes())


def wait_for_job(url: str, job_id: str, cwd: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = run_curl(f"curl localhost:8000/v1/jobs/{job_id}", url, cwd)
        if json.loads(body)["state"] in ("done", "failed", "cancelled"):
            assert json.loads(body)["state"] == "done", body
            return
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} not done after {timeout} s")


def test_the_readme_lists_the_examples_this_test_runs():
    commands = [c for c, _ in examples()]
    assert sum(c.startswith("curl ") for c in commands) >= 15
    assert any("colormap=drought" in c for c in commands)
    assert any(c.startswith("curl -X POST localhost:8000/v1/jobs") for c in commands)
    assert any("open_cube(" in c for c in commands)


def test_every_readme_example_answers_its_status_on_the_demo_cube(demo_server):
    url, folder = demo_server
    cwd = folder / "work"
    cwd.mkdir()
    host = url.removeprefix("http://")
    job_id = None
    for command, status in examples():
        if status == 0:  # a Python example
            code = command.replace("localhost:8000", host)
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            assert done.returncode == 0, (command, done.stderr)
            continue
        if command.startswith("python "):
            code = re.search(r'python -c "(.*)"', command).group(1).replace("localhost:8000", host)
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            assert done.returncode == 0 and "lstm" in done.stdout, (command, done.stderr)
            continue
        if "/ID" in command:
            if "/files" in command:
                wait_for_job(url, job_id, cwd)
            command = command.replace("/ID", f"/{job_id}")
        got, body = run_curl(command, url, cwd)
        assert got == status, (command, body[:300])
        if "/v1/jobs" in command and "-X POST" in command:
            job_id = json.loads(body)["id"]
    assert (cwd / "subset.nc").stat().st_size > 0 and (cwd / "t.png").read_bytes()[:4] == (
        b"\x89PNG"
    )
