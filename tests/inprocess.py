"""The smapx command line run inside the test process, through its console entry point
(cli.main.main: one-line errors, exit codes): a command costs what it computes, not the ~2 s a
new interpreter takes to import torch, xarray and Celery. For tests that are not about the
process boundary; each module that uses it keeps one command in a process of its own."""

import gc
import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from unittest import mock

from cli.main import main
from model.settings import get_settings


def refresh_settings() -> None:
    """Read the settings and point the Celery app at their Redis again, as a new process would."""
    get_settings.cache_clear()
    if "worker.app" in sys.modules:
        sys.modules["worker.app"].configure()


@contextmanager
def settings(env: dict) -> Iterator[None]:
    """This process under the SMAPX_ variables `env` for the duration, then as it was."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    refresh_settings()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        refresh_settings()


def run(*args, env: dict | None = None) -> tuple[int, str, str]:
    """`smapx ARGS` in this process under the settings `env`: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["smapx", *map(str, args)]
    with settings(env or {}), mock.patch.object(sys, "argv", argv):
        try:
            with redirect_stdout(out), redirect_stderr(err):
                main()
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        finally:
            gc.unfreeze()  # main freezes the objects left at a process's exit
    return code, out.getvalue(), err.getvalue()


def smapx(*args, env: dict | None = None) -> str:
    """`smapx ARGS` in this process, which must succeed; its standard output."""
    code, out, err = run(*args, env=env)
    assert code == 0, f"{args}: exit {code}\n{err}"
    return out
