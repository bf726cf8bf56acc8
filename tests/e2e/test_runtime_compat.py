"""The wheel on an older runtime: Python 3.12 with Spark 4.0's pyspark and Delta 4.0 (the Spark
line of Databricks Runtime 17.3 LTS), as `make compat` builds it in .venv-spark40.

The wheel is installed with its dependencies into that environment as a runtime's library
install would be: pip must keep the runtime's pyspark, pandas and pyarrow. Then a small job runs
there twice, on a classic local session with the JVM UDFs and over a Spark Connect server of
that Spark without them (as serverless compute runs it), and both results are checked against
the source and against each other.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from conftest import REPO, UCI_CSV, require_shared
from connect_server import connect_server
from helpers import job_doc

ROWS = 200
RUNTIME = {"pyspark": "4.0.1", "delta-spark": "4.0.0", "pandas": "2.2.3", "pyarrow": "19.0.1"}


def _env(python: Path) -> dict[str, str]:
    """The runtime's own environment: none of this venv's Spark, Python path or remote."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYSPARK_", "SPARK_", "STRM_SPARK_")) and k != "PYTHONPATH"
    }
    env.update(
        PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python), SPARK_LOCAL_IP="127.0.0.1"
    )
    return env


def _run(cmd: list, python: Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=_env(python),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _freeze(python: Path, cwd: Path) -> dict[str, str]:
    proc = _run([python, "-m", "pip", "list", "--format=json"], python, cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {p["name"].lower(): p["version"] for p in json.loads(proc.stdout)}


@pytest.fixture(scope="module")
def runtime(wheel, tmp_path_factory) -> Path:
    """The runtime venv's Python, with the freshly built wheel installed into it."""
    venv = Path(os.environ.get("STRM_SPARK_COMPAT_VENV", REPO / ".venv-spark40"))
    python = venv / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"no runtime venv at {venv}: `make compat` builds it (`make test` does)")
    tmp = tmp_path_factory.mktemp("runtime")

    before = _freeze(python, tmp)
    assert {k: before.get(k) for k in RUNTIME} == RUNTIME, "the runtime venv is not as built"
    _run(
        [python, "-m", "pip", "uninstall", "--quiet", "-y", "strm-spark"], python, tmp, timeout=120
    )
    proc = _run([python, "-m", "pip", "install", "--quiet", wheel], python, tmp, timeout=600)
    assert proc.returncode == 0, f"pip install of the wheel failed:\n{proc.stderr[-3000:]}"
    after = _freeze(python, tmp)
    changed = {
        k: (v, after.get(k)) for k, v in before.items() if k != "strm-spark" and after.get(k) != v
    }
    assert not changed, f"installing the wheel changed the runtime's packages: {changed}"
    assert after["strm-spark"] == wheel.name.split("-")[1]
    return python


def _job(tmp: Path, name: str) -> Path:
    lines = UCI_CSV.read_text(encoding="utf-8").splitlines()[: ROWS + 1]
    (tmp / "in.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump(job_doc(tmp / "in.csv", tmp / name)), encoding="utf-8")
    return config


def _check_summary(proc: subprocess.CompletedProcess, engine: str) -> None:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    assert f"rows read         {ROWS}" in proc.stdout, proc.stdout
    assert f"rows encrypted    {ROWS}" in proc.stdout, proc.stdout
    assert f"encryption        {engine}" in proc.stdout, proc.stdout


def test_the_wheel_runs_on_spark_4_0_classic_and_over_connect(runtime, spark, tmp_path):
    require_shared()
    probe = _run(
        [
            runtime,
            "-c",
            "import pyspark, strm_spark, delta; from strm_spark import "
            "session; print(pyspark.__version__, strm_spark.__file__, session.DELTA_PACKAGES[0])",
        ],
        runtime,
        tmp_path,
        timeout=120,
    )
    version, module, delta = probe.stdout.split()
    assert version == RUNTIME["pyspark"] and "site-packages" in module, probe.stdout + probe.stderr
    assert delta == "io.delta:delta-spark_2.13:4.0.0"  # the jars of the pip package, Spark 4.0's

    classic = _run(
        [runtime, "-m", "strm_spark.cli", "run", _job(tmp_path, "classic")], runtime, tmp_path
    )
    _check_summary(classic, "jvm (JVM UDF on the class path)")

    conf = json.loads(
        _run(
            [
                runtime,
                "-c",
                # A server without the UDF jar, as serverless compute is (no jar libraries):
                # the conf of a session that finds no jar (neither the jar nor its local file
                # system).
                "import json, pathlib; from strm_spark import session; "
                "session.UDF_JAR = pathlib.Path('/no/strm-spark-udf.jar'); "
                "print(json.dumps(session.local_conf('local[2]', 2)))",
            ],
            runtime,
            tmp_path,
            timeout=120,
        ).stdout
    )
    submit = Path(module).parent.parent / "pyspark" / "bin" / "spark-submit"
    # Without the jar the Python (Arrow) functions encrypt, the summary says why, and the rows
    # are the same.
    assert "strm-spark-udf.jar" not in json.dumps(conf)
    with connect_server(
        tmp_path / "server", python=str(runtime), spark_submit=str(submit), base_conf=conf
    ) as url:
        remote = _run(
            [runtime, "-m", "strm_spark.cli", "run", _job(tmp_path, "connect"), "--remote", url],
            runtime,
            tmp_path,
        )
    _check_summary(remote, "python (JVM UDF not on the class path: Python engine)")

    # Same rows on both sessions: the derived (decrypted) table, and the encrypted one's shape.
    def derived(name: str):
        return (
            spark.read.format("delta")
            .load(str(tmp_path / name / "derived" / "d0"))
            .drop("strmMeta")
        )

    assert_df_equality(derived("classic"), derived("connect"), ignore_row_order=True)
    plain = {r["CustomerID"] for r in csv.DictReader((tmp_path / "in.csv").open())} - {""}
    assert {r["CustomerID"] for r in derived("classic").collect()} - {None} == plain
    for name in ("classic", "connect"):
        enc = spark.read.format("delta").load(str(tmp_path / name / "encrypted"))
        assert enc.count() == ROWS
        assert not plain & {r["CustomerID"] for r in enc.collect()}, f"{name}: plaintext ids"
