"""Entry points of the packaged jobs: `spark-submit jobs/*.py`, Databricks `python_wheel_task`
and console scripts.

Each reads its arguments from `sys.argv[1:]` (a wheel task's `parameters`), runs one
`strm-spark` command and fails loudly: a console script or spark-submit exits with the
command's code; a Databricks task, which ignores return values, gets an exception.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

__all__ = ["batch_job_main", "strm_job_main", "subjects_main"]

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def batch_job_main(argv: Sequence[str] | None = None) -> int:
    """A native job: `CONFIG [--source PATH]`, as `strm-spark run`."""
    return _run_command("run", argv)


def strm_job_main(argv: Sequence[str] | None = None) -> int:
    """STRM's batch-job files unchanged: `--config C --contract K --schema S --connector N=URI`,
    as `strm-spark run-strm`."""
    return _run_command("run-strm", argv)


def subjects_main(argv: Sequence[str] | None = None) -> int:
    """Data-subject requests: the arguments of `strm-spark subjects`, forwarded unchanged."""
    return _run_command("subjects", argv)


def on_databricks() -> bool:
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


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
    from .cli import main

    try:
        return main(args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error, already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def _finish(command: str, code: int) -> int:
    """0 on success; otherwise fail the way the launcher notices."""
    if code == 0:
        return 0
    if on_databricks():  # a python_wheel_task fails on an exception, not on a return value
        raise RuntimeError(f"strm-spark {command} failed with exit code {code}; "
                           "the error is printed above")
    raise SystemExit(code)


def _attach_launcher_session() -> SparkSession | None:
    """Start the launcher's session before `get_spark` could start a local one.

    Under spark-submit the Python driver runs beside a JVM that already holds the submitted
    conf (master, jars, resources); a session built with `get_spark`'s local defaults would
    override the master. So build it from that conf, adding Delta's extension and catalog
    only where missing. On Databricks the cluster's session is used as it is (Delta is
    built in). Returns the session when this process owns it (spark-submit), else None.
    """
    if SparkSession.getActiveSession() is not None:
        return None
    if on_databricks():
        SparkSession.builder.getOrCreate()
        return None
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # plain Python: get_spark starts a local one
        return None
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connect to spark-submit's JVM to read its conf
    conf = SparkConf()
    builder = SparkSession.builder
    extensions = [e.strip() for e in conf.get("spark.sql.extensions", "").split(",") if e.strip()]
    if DELTA_EXTENSION not in extensions:
        builder = builder.config("spark.sql.extensions", ",".join([*extensions, DELTA_EXTENSION]))
    if not conf.contains("spark.sql.catalog.spark_catalog"):
        builder = builder.config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    return builder.getOrCreate()
