"""The `strm-spark` command end to end, in its own process (its own JVM)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import UCI_CSV, require_shared
from helpers import job_doc


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, STRM_SPARK_MASTER="local[2]")
    return subprocess.run(
        [sys.executable, "-m", "strm_spark.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_prints_summary_and_exits_zero(spark, tmp_path):
    require_shared()
    lines = UCI_CSV.read_text(encoding="utf-8").splitlines()[:301]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job_doc("in.csv", Path("out"))))
    proc = _cli("run", "job.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "strm-spark run summary: job test_job" in proc.stdout
    assert "rows read         300" in proc.stdout
    assert "[4/6] keys:" in proc.stderr  # progress, one line per stage
    from helpers import run_record

    assert run_record(spark, tmp_path / "out" / "_runs" / "runs")["rows_encrypted"] == 300
    # No plaintext customer id on the console.
    # Parsed as CSV: descriptions hold commas. Ids are 5 digits, as "17850".
    ids = {row["CustomerID"] for row in csv.DictReader(lines)}
    ids.discard("")
    assert ids and all(len(i) == 5 for i in ids)
    assert not [i for i in ids if i in proc.stdout + proc.stderr]


def test_validate_and_generate_commands(tmp_path):
    # The demo job as a fresh clone has it: conf/ copied, nothing generated yet.
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "conf").mkdir()
    for name in ("demo.yaml", "demo_contract.yaml"):
        (tmp_path / "conf" / name).write_bytes((repo / "conf" / name).read_bytes())
    proc = _cli("validate", "conf/demo.yaml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "masking.seed_file" in proc.stderr and "new-secret" in proc.stderr
    proc = _cli("new-secret", "out/demo/secrets/mask-seed", cwd=tmp_path)
    assert proc.returncode == 0
    proc = _cli("validate", "conf/demo.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "source.path" in proc.stderr, proc.stderr[-2000:]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo.generate",
            "--rows",
            "50",
            "--out",
            "out/demo/input/clickstream.csv",
        ],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(repo)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert (tmp_path / "out/demo/input/clickstream.csv").read_text().count("\n") == 51
    proc = _cli("validate", "conf/demo.yaml", cwd=tmp_path)
    assert proc.returncode == 0 and "valid (job demo" in proc.stdout, proc.stderr[-2000:]
    proc = _cli("new-secret", "s/seed", cwd=tmp_path)
    assert proc.returncode == 0 and len((tmp_path / "s" / "seed").read_text().strip()) == 64
    assert oct((tmp_path / "s" / "seed").stat().st_mode & 0o777) == "0o600"
