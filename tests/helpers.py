"""Test helpers: small job configs written to temporary folders."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import BLOGPOST, require_shared

from strm_spark.compat.strm.config import load_strm_job
from strm_spark.config.load import parse_job_config
from strm_spark.config.model import JobConfig

UCI_CONTRACT_DOC: dict[str, Any] = {
    "schema": {
        "name": "UCI Online Retail",
        "nodes": [
            {"name": "InvoiceNo", "type": "STRING"},
            {"name": "StockCode", "type": "STRING"},
            {"name": "Description", "type": "STRING"},
            {"name": "Quantity", "type": "INTEGER"},
            {"name": "InvoiceDate", "type": "STRING"},
            {"name": "UnitPrice", "type": "STRING"},
            {"name": "CustomerID", "type": "STRING"},
            {"name": "Country", "type": "STRING"},
        ],
    },
    "key_field": "CustomerID",
    "pii_fields": {"CustomerID": 1},
    "data_subject_field": "CustomerID",
}


def job_doc(
    source: str | Path, out: Path, contract: Any = None, fmt: str = "csv", **overrides: Any
) -> dict[str, Any]:
    """A job config document like conf/online_retail.yaml, writing under `out`."""
    doc: dict[str, Any] = {
        "name": "test_job",
        "contract": copy.deepcopy(contract if contract is not None else UCI_CONTRACT_DOC),
        "event_contract_ref": "strmprivacy/online-retail/1.0.0",
        "source": {"path": str(source), "format": fmt},
        "consent": {"default_levels": [2]},
        "timestamp": {
            "field": "InvoiceDate",
            "pattern": "yyyy-MM-dd HH:mm:ss",
            "default_time_zone": "Europe/Amsterdam",
        },
        "keys": {"group_id": "test-group", "store": str(out / "keystore")},
        "outputs": {
            "encrypted": str(out / "encrypted"),
            "data_subjects": str(out / "data_subjects"),
            "rejected": str(out / "rejected"),
            "derived": [
                {
                    "name": "decrypted-0",
                    "path": str(out / "derived" / "d0"),
                    "consent_type": "CUMULATIVE",
                    "consent_levels": [2],
                }
            ],
        },
    }
    for key, value in overrides.items():
        doc[key] = value
    return doc


def job_config(
    source: str | Path, out: Path, contract: Any = None, fmt: str = "csv", **overrides: Any
) -> JobConfig:
    return parse_job_config(job_doc(source, out, contract, fmt, **overrides), "test.yaml", out)


class KeyRing(dict):
    """key link -> keyset, for tests; its repr never shows key material in a failure report."""

    def __repr__(self) -> str:
        return f"<KeyRing of {len(self)} keysets>"


def key_ring(spark, key_store: str) -> KeyRing:
    """Every keyset of a key store, by key link."""
    rows = (
        spark.read.format("delta").load(f"{key_store}/keys").select("keyLink", "keyset").collect()
    )
    return KeyRing({r["keyLink"]: bytes(r["keyset"]) for r in rows})


class Secret(bytes):
    """Secret bytes whose repr never shows them in a failure report."""

    def __repr__(self) -> str:
        return "<secret>"


def run_record(spark, runs_path, run_id=None) -> dict:
    """The JSON summary of one run (the only one, or `run_id`) in a job's table of runs."""
    import json

    rows = spark.read.format("delta").load(str(runs_path)).collect()
    rows = [r for r in rows if run_id is None or r["runId"] == run_id]
    assert len(rows) == 1, f"{len(rows)} run records"
    return json.loads(rows[0]["summary"])


def _write_json(tmp_path: Path, name: str, doc) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def strm_docs():
    """STRM's blog-post job config, contract and schema, as parsed JSON."""
    require_shared()
    config = json.loads((BLOGPOST / "batch-job-config.json").read_text())
    contract = json.loads((BLOGPOST / "online-retail-contract.json").read_text())
    schema = json.loads((BLOGPOST / "online-retail.json").read_text())
    return config, contract, schema


def strm_load(tmp_path, config, contract, schema, connectors=None, **kwargs):
    """`load_strm_job` on the given documents, written as files under `tmp_path`."""
    return load_strm_job(
        _write_json(tmp_path, "job.json", config),
        _write_json(tmp_path, "contract.json", contract),
        _write_json(tmp_path, "schema.json", schema),
        connectors or {"s3-batch-demo": str(tmp_path)},
        **kwargs,
    )


def strm_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`strm-spark ARGS` in a process of its own (its own JVM) in `cwd`, with this
    virtualenv's Python for the workers, `env` added and no inherited SPARK_REMOTE."""
    full = dict(os.environ, PYSPARK_PYTHON=sys.executable, **(env or {}))
    full.pop("SPARK_REMOTE", None)
    return subprocess.run(
        [sys.executable, "-m", "strm_spark.cli", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_process(*args: str, cwd: Path) -> subprocess.Popen:
    """`strm-spark ARGS` started in a process group of its own (to SIGKILL it whole), on
    local[2] with the suite's interpreted-Java settings; stdout and stderr piped."""
    from conftest import INTERPRETED_JAVA_OPTIONS

    env = dict(
        os.environ,
        PYSPARK_PYTHON=sys.executable,
        STRM_SPARK_MASTER="local[2]",
        JAVA_TOOL_OPTIONS=INTERPRETED_JAVA_OPTIONS,
    )
    env.pop("SPARK_REMOTE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "strm_spark.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def delta_commits(table: Path) -> int:
    """How many commits a local Delta table has (0 before it exists)."""
    log = table / "_delta_log"
    return len(list(log.glob("*.json"))) if log.exists() else 0


def kill_all_when(points: list[tuple], timeout: float = 420, frozen=None) -> None:
    """SIGKILL each (process, table, commits) point's process group as soon as its Delta
    `table` has `commits` commits. The group is stopped (SIGSTOP) first and `frozen(point)`
    looks at what it left, then it is killed. Fails if a process ends before its kill point or
    never reaches it."""
    import signal
    import time

    import pytest

    pending = list(points)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for point in list(pending):
            proc, table, commits = point
            if delta_commits(table) >= commits:
                os.killpg(proc.pid, signal.SIGSTOP)
                if frozen is not None:
                    frozen(point)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                pending.remove(point)
            elif proc.poll() is not None:
                for other, _, _ in pending:
                    if other.poll() is None:
                        os.killpg(other.pid, signal.SIGKILL)
                pytest.fail(f"the job finished before {table} reached {commits} commits")
        time.sleep(0.005)
    for proc, table, commits in pending:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"{table} never reached {commits} commits")
