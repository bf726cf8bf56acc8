"""A real Spark Connect server on 127.0.0.1, started with pyspark's spark-submit, for tests.

The server gets the conf strm-spark's local sessions have (Delta's jars and extension, the UDF
jar, UTC), so a job over it and a job on a classic session compare row for row.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def connect_server(
    log_dir: Path,
    master: str = "local[2]",
    python: str = sys.executable,
    spark_submit: str | None = None,
    conf: dict[str, str] | None = None,
    jars: list[str] | None = None,
    base_conf: dict[str, str] | None = None,
    timeout: float = 180,
) -> Iterator[str]:
    """Start a Spark Connect server, yield its `sc://127.0.0.1:PORT` URL, stop it afterwards.

    `base_conf` replaces this process's `local_conf` (another runtime's, for instance)."""
    import pyspark

    from strm_spark.session import local_conf

    port = free_port()
    settings = dict(local_conf(master, shuffle_partitions=2) if base_conf is None else base_conf)
    settings.update(
        {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
        }
    )
    settings.update(conf or {})
    if jars is not None:
        settings["spark.jars"] = ",".join(jars)
    submit = spark_submit or str(Path(pyspark.__file__).parent / "bin" / "spark-submit")
    cmd = [submit, "--class", SERVER_CLASS, "--master", master, "--name", "strm-spark-test-connect"]
    for key, value in settings.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd.append("spark-internal")
    env = dict(os.environ, PYSPARK_PYTHON=python, SPARK_LOCAL_IP="127.0.0.1")
    env.pop("SPARK_REMOTE", None)
    env["SPARK_HOME"] = str(Path(submit).resolve().parent.parent)  # the Spark of `spark_submit`
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / "connect-server.log", "wb")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (log_dir / "connect-server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"the Spark Connect server did not start (exit {proc.poll()}):\n{tail}"
                )
            time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
