"""The `strm-spark` command end to end, in its own process (its own JVM): one small job run by
the CLI serves the summary, machine-readable output and clean-error checks (#16 item 10): with
--json stdout holds only the JSON; Spark's error texts (which can quote row values) are never
printed, only their class and what to do, and the full text goes to an owner-only log with
--debug; bad SQL is exit 2."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import UCI_CSV, require_shared
from helpers import job_doc, run_record, strm_cli

from strm_spark.cli import main as cli


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return strm_cli(*args, cwd=cwd, env={"STRM_SPARK_MASTER": "local[2]"})


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`strm-spark run` of the UCI file's first 300 rows: (folder, source lines, the process)."""
    require_shared()
    root = tmp_path_factory.mktemp("cli")
    lines = UCI_CSV.read_text(encoding="utf-8").splitlines()[:301]
    (root / "in.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "job.yaml").write_text(yaml.safe_dump(job_doc("in.csv", Path("out"))))
    return root, lines, _cli("run", "job.yaml", cwd=root)


def test_run_prints_summary_and_exits_zero(spark, cli_run):
    root, lines, proc = cli_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "strm-spark run summary: job test_job" in proc.stdout
    assert "rows read         300" in proc.stdout
    assert "[4/5] keys:" in proc.stderr  # progress, one line per stage
    assert run_record(spark, root / "out" / "_runs" / "runs")["rows_encrypted"] == 300
    # No plaintext customer id on the console.
    # Parsed as CSV: descriptions hold commas. Ids are 5 digits, as "17850".
    ids = {row["CustomerID"] for row in csv.DictReader(lines)}
    ids.discard("")
    assert ids and all(len(i) == 5 for i in ids)
    assert not [i for i in ids if i in proc.stdout + proc.stderr]


def test_bad_sql_is_one_clear_message_with_exit_2(spark, cli_run, capsys):
    cfg = cli_run[0] / "job.yaml"
    for query, condition in (
        ("SELECT * FROM encrypted WHERE (", "PARSE_SYNTAX_ERROR"),
        ("SELECT nope FROM encrypted", "UNRESOLVED_COLUMN"),
    ):
        assert cli.main(["sql", str(cfg), "-q", query]) == 2
        err = capsys.readouterr().err
        assert f"does not parse or resolve ({condition}" in err
        assert (
            len(err.strip().splitlines()) == 1 and "Traceback" not in err and '"logger"' not in err
        )


def test_json_stdout_holds_only_the_json(cli_run):
    root = cli_run[0]
    proc = _cli("subjects", "forget", str(root / "job.yaml"), "17850", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)  # nothing else on stdout: no log4j, no "Deleted N files"
    assert report["completed"] and report["files_removed"] > 0
    assert "17850" not in proc.stdout


def test_a_spark_error_prints_its_class_never_its_text(tmp_path, monkeypatch, capsys):
    class Boom(Exception):
        def getCondition(self):
            return "CAST_INVALID_INPUT"

    def failing(args):
        raise Boom("The value 'jane.doe@example.com' of the type STRING cannot be cast to INT")

    monkeypatch.setattr(cli, "_validate", failing)
    assert cli.main(["validate", "job.yaml"]) == 1
    err = capsys.readouterr().err
    assert "CAST_INVALID_INPUT" in err and "--debug" in err and "jane.doe" not in err
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--debug", "validate", "job.yaml"]) == 1
    err = capsys.readouterr().err
    assert "jane.doe" not in err
    log = re.search(r"the full error is in (\S+)", err).group(1)
    assert "jane.doe@example.com" in open(log, encoding="utf-8").read()
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    os.unlink(log)


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


def test_row_values_never_reach_stderr_without_debug(cli_run):
    """A CSV without its header line and a query whose cast fails on a decrypted value: the
    error names the file and columns by position, and neither strm-spark's message nor
    Spark's log lines (task failures quote values) print a row (#33 defect 4)."""
    root = cli_run[0]
    marker = "leaky.person@example.org"
    (root / "noheader").mkdir(exist_ok=True)
    (root / "noheader" / "in.csv").write_text(
        f"536365,85123A,{marker},6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n",
        encoding="utf-8",
    )
    proc = _cli("run", "job.yaml", "--source", "noheader/in.csv", cwd=root)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "in.csv: the CSV header does not match" in proc.stderr
    assert "column 1 of 8" in proc.stderr
    assert marker not in proc.stderr + proc.stdout and "17850" not in proc.stderr
    # A cast error quotes the value it failed on, in Spark's executor and scheduler logs.
    query = "SELECT cast(concat('zz', CustomerID, 'zz') AS INT) FROM decrypted_0"
    proc = _cli("sql", "job.yaml", "-q", query, cwd=root)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "CAST_INVALID_INPUT" in proc.stderr
    assert not re.search(r"zz\d+zz", proc.stderr + proc.stdout), proc.stderr[-3000:]
