"""Machine-readable output and clean errors (#16 item 10): with --json stdout holds only the
JSON; Spark's error texts (which can quote row values) are never printed, only their class
and what to do, and the full text goes to an owner-only log with --debug; bad SQL is exit 2."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import yaml
from conftest import UCI_CSV, require_shared
from helpers import job_doc

from strm_spark.cli import main as cli
from strm_spark.config.load import parse_job_config
from strm_spark.pipeline.run import run_job


def _job(spark, tmp_path):
    require_shared()
    lines = UCI_CSV.read_text(encoding="utf-8").splitlines()
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines[:301]) + "\n", encoding="utf-8")
    doc = job_doc(src, tmp_path / "out")
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    run_job(spark, parse_job_config(doc, str(cfg), tmp_path))
    return cfg


def test_json_stdout_holds_only_the_json(spark, tmp_path):
    cfg = _job(spark, tmp_path)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run(
        [sys.executable, "-m", "strm_spark.cli", "subjects", "forget", str(cfg), "17850", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
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


def test_bad_sql_is_one_clear_message_with_exit_2(spark, tmp_path, capsys):
    cfg = _job(spark, tmp_path)
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
