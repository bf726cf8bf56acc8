"""strm-spark over a real Spark Connect server (127.0.0.1), against the same job on a classic
session: the job, an incremental rerun, subjects keylinks, export, forget, list and
purge-expired, a decrypting view, and run-strm on STRM's own job files.

A Connect client switches the whole Python process to Connect mode, so the commands over
Connect run in `strm-spark` subprocesses (`--remote`); the classic runs and the comparisons
use the suite's session in this process. One server serves the module.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from conftest import BLOGPOST, TEST_CONF, UCI_CSV, require_shared
from connect_server import connect_server
from helpers import job_doc, strm_cli

from strm_spark.compat.strm.config import load_strm_job
from strm_spark.config.load import parse_job_config
from strm_spark.pipeline.run import run_job

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with connect_server(tmp_path_factory.mktemp("connect"), conf=TEST_CONF) as url:
        yield url


def _cli(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return strm_cli(*args, "--remote", url, cwd=cwd, timeout=900)


def _doc(src: Path, out: Path) -> dict:
    doc = job_doc(src, out)
    doc["source"]["incremental"] = True
    doc["source"]["options"] = {"header": True}
    return doc


def _derived(spark, out: Path):
    return spark.read.format("delta").load(str(out / "derived" / "d0")).drop("strmMeta")


def test_job_rerun_subjects_and_views_over_connect_equal_classic(spark, server, tmp_path):
    require_shared()
    lines = UCI_CSV.read_text(encoding="utf-8").splitlines()
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.csv").write_text("\n".join(lines[:151]) + "\n", encoding="utf-8")
    remote_out, classic_out = tmp_path / "remote", tmp_path / "classic"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(_doc(src, remote_out)))
    classic = parse_job_config(_doc(src, classic_out), "classic.yaml", tmp_path)

    proc = _cli(server, "run", "job.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rows read         150" in proc.stdout
    assert "encryption        jvm (JVM UDF on the class path)" in proc.stdout
    run_job(spark, classic)

    # Incremental: only the new file is read, over Connect as on the classic session.
    (src / "b.csv").write_text("\n".join([lines[0], *lines[151:301]]) + "\n", encoding="utf-8")
    proc = _cli(server, "run", "job.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rows read         150" in proc.stdout
    run_job(spark, classic)

    assert_df_equality(
        _derived(spark, remote_out),
        _derived(spark, classic_out),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    count = lambda out, t: spark.read.format("delta").load(str(out / t)).count()  # noqa: E731
    for table in ("encrypted", "rejected", "data_subjects", "keystore/keys"):
        assert count(remote_out, table) == count(classic_out, table), table

    subject = _derived(spark, remote_out).where("CustomerID IS NOT NULL").first()["CustomerID"]
    proc = _cli(server, "subjects", "keylinks", "job.yaml", subject, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = json.loads(proc.stdout)
    assert found["data_subject_id"] == subject and found["key_links"]
    assert all(k["key_present"] for k in found["key_links"])

    proc = _cli(server, "subjects", "export", "job.yaml", subject, "--out", "export", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    exported = _derived(spark, remote_out).where(f"CustomerID = '{subject}'").count()
    assert manifest and exported > 0

    proc = _cli(server, "subjects", "forget", "job.yaml", subject, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["keys_removed"] > 0
    assert _derived(spark, remote_out).where(f"CustomerID = '{subject}'").count() == 0

    # The decrypting view over Connect shows the derived table's rows, the forgotten one's not.
    proc = _cli(
        server, "sql", "job.yaml", "-q", "SELECT count(*) AS n FROM decrypted_0", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"|{_derived(spark, remote_out).count()}" in proc.stdout.replace(" ", "")

    # Listing pages (two of 12) through every data subject the job linked, the forgotten one
    # excepted.
    listed, token = [], None
    while True:
        proc = _cli(
            server,
            "subjects",
            "list",
            "job.yaml",
            "--page-size",
            "12",
            "--json",
            *(["--page-token", token] if token else []),
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        page = json.loads(proc.stdout)
        listed += page["data_subject_ids"]
        if not (token := page["next_page_token"]):
            break
    subjects = spark.read.format("delta").load(str(remote_out / "data_subjects"))
    expected = {r[0] for r in subjects.select("dataSubject").distinct().collect()}
    assert sorted(listed) == sorted(expected) and subject not in listed and len(listed) > 12

    # purge-expired with a cut-off past every key's expiry removes every key and derived row.
    keys = spark.read.format("delta").load(str(remote_out / "keystore" / "keys")).count()
    proc = _cli(
        server,
        "subjects",
        "purge-expired",
        "job.yaml",
        "--now",
        "2100-01-01T00:00:00Z",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["keys_removed"] == keys > 0
    assert spark.read.format("delta").load(str(remote_out / "keystore" / "keys")).count() == 0
    assert _derived(spark, remote_out).count() == 0


def test_run_strm_over_connect_equals_classic(spark, server, tmp_path):
    """STRM's own job files over Connect: the same one-file CSVs as a classic run."""
    require_shared()
    lines = (BLOGPOST / "uci_online_retail.csv").read_text(encoding="utf-8").splitlines()[:301]
    outs = {}
    for name in ("remote", "classic"):
        bucket = tmp_path / name
        bucket.mkdir()
        (bucket / "uci_online_retail.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        outs[name] = bucket / "uci_online_retail"
    args = [
        "--config",
        BLOGPOST / "batch-job-config.json",
        "--contract",
        BLOGPOST / "online-retail-contract.json",
        "--schema",
        BLOGPOST / "online-retail.json",
    ]
    proc = _cli(
        server,
        "run-strm",
        *map(str, args),
        "--connector",
        f"s3-batch-demo={tmp_path / 'remote'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rows read         300" in proc.stdout
    run_job(spark, load_strm_job(*args[1::2], {"s3-batch-demo": str(tmp_path / "classic")}))

    def text(name: str, file: str) -> str:
        return UUID.sub("K", (outs[name] / file).read_text(encoding="utf-8"))

    assert text("remote", "decrypted-0.csv") == text("classic", "decrypted-0.csv")
    assert text("remote", "decrypted-0.csv").count("\n") == 301
    for file in ("encrypted.csv", "keys.csv"):  # new keys each run: the same shape
        assert len(text("remote", file).splitlines()) == len(text("classic", file).splitlines()), (
            file
        )


def test_stream_over_connect_equals_the_classic_batch_job(spark, server, tmp_path):
    """`strm-spark stream --remote`: foreachBatch runs on the server (its own Python process),
    and the micro-batches write what a classic batch run of the same files writes."""
    require_shared()
    lines = UCI_CSV.read_text(encoding="utf-8").splitlines()
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.csv").write_text("\n".join(lines[:101]) + "\n", encoding="utf-8")
    bad = "536999,X,BAD DATE,1,not a date,1.0,12345,United Kingdom"
    (src / "b.csv").write_text("\n".join([lines[0], *lines[101:151], bad]) + "\n")
    remote_out, classic_out = tmp_path / "remote", tmp_path / "classic"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job_doc(src, remote_out)))
    proc = _cli(server, "stream", "job.yaml", "--max-files-per-trigger", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "micro-batches     2" in proc.stdout and "rows rejected     1" in proc.stdout
    run_job(spark, parse_job_config(job_doc(src, classic_out), "classic.yaml", tmp_path))
    assert_df_equality(
        _derived(spark, remote_out),
        _derived(spark, classic_out),
        ignore_row_order=True,
        ignore_nullable=True,
    )

    def rejected(out: Path):
        df = spark.read.format("delta").load(str(out / "rejected"))
        return [(r["rejectReasons"], r["rowNumber"]) for r in df.collect()]

    assert (
        rejected(remote_out)
        == rejected(classic_out)
        == [(["timestamp field 'InvoiceDate' does not match pattern 'yyyy-MM-dd HH:mm:ss'"], 51)]
    )
