"""Entry points of the packaged jobs: `spark-submit jobs/*.py`, Databricks `python_wheel_task`
and console scripts.

Each reads its arguments from `sys.argv[1:]` (a wheel task's `parameters`), runs one
`strm-spark` command and fails loudly: a console script or spark-submit exits with the
command's code; a Databricks task, which ignores return values, gets an exception.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from strm_spark.errors import CommandFailed
from strm_spark.session import launcher_session, on_databricks

__all__ = ["batch_job_main", "stream_job_main", "strm_job_main", "subjects_main"]


def batch_job_main(argv: Sequence[str] | None = None) -> int:
    """A native job: `CONFIG [--source PATH]`, as `strm-spark run`."""
    return _run_command("run", argv)


def stream_job_main(argv: Sequence[str] | None = None) -> int:
    """A native job as a streaming query: `CONFIG [--trigger-interval D] ...`, as
    `strm-spark stream` (available now by default: what is there, then stop)."""
    return _run_command("stream", argv)


def strm_job_main(argv: Sequence[str] | None = None) -> int:
    """STRM's batch-job files unchanged: `--config C --contract K --schema S --connector N=URI`,
    as `strm-spark run-strm`."""
    return _run_command("run-strm", argv)


def subjects_main(argv: Sequence[str] | None = None) -> int:
    """Data-subject requests: the arguments of `strm-spark subjects`, forwarded unchanged."""
    return _run_command("subjects", argv)


def _run_command(command: str, argv: Sequence[str] | None) -> int:
    args = [command, *(sys.argv[1:] if argv is None else argv)]
    owned = _attach_launcher_session()
    try:
        code = _cli(args)
    finally:
        if owned is not None:
            owned.stop()
    return _finish(command, code)


def _cli(args: list[str]) -> int:
    from strm_spark.cli.main import main

    try:
        return main(args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error, already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def _finish(command: str, code: int) -> int:
    """0 on success; otherwise fail the way the launcher notices."""
    if code == 0:
        return 0
    if on_databricks():  # a python_wheel_task fails on an exception, not on a return value
        raise CommandFailed(
            f"strm-spark {command} failed with exit code {code}; the error is printed above"
        )
    raise SystemExit(code)


def _attach_launcher_session() -> SparkSession | None:
    """Start the launcher's session (spark-submit, Databricks) before any command runs; returns
    it when this process owns it and must stop it (spark-submit), else None."""
    if SparkSession.getActiveSession() is not None or on_databricks():
        launcher_session()
        return None
    return launcher_session()
