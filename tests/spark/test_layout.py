"""The output layout (no day partitions by default, rows sorted by day, statistics on strmDay),
reads bounded to a batch's days, and what a failed run leaves behind."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import UCI_CSV, require_shared
from helpers import job_config, job_doc
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from strm_spark.config.load import parse_job_config
from strm_spark.errors import DataError
from strm_spark.pipeline.run import run_job


def _uci_slice(path: Path, first: int, last: int, step: int = 1) -> Path:
    """Every `step`-th row of rows first..last (1-based, header kept) of the UCI file (its
    19,998 rows are in time order, over 8 days)."""
    require_shared()
    lines = UCI_CSV.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], *lines[first : last + 1 : step]]) + "\n", encoding="utf-8")
    return path


def active_files(table: Path) -> dict[str, dict]:
    """The table's current data files (path -> parsed stats), replayed from its JSON log."""
    files: dict[str, dict] = {}
    for log in sorted((table / "_delta_log").glob("*.json")):
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                files[action["add"]["path"]] = json.loads(action["add"].get("stats") or "{}")
            elif "remove" in action:
                files.pop(action["remove"]["path"], None)
    return files


def _day_range(stats: dict, column: str = "strmDay") -> tuple[str, str]:
    return stats["minValues"][column][:10], stats["maxValues"][column][:10]


@pytest.fixture(scope="module")
def two_runs(spark, tmp_path_factory):
    """Two runs of different days into one set of outputs, giving unpartitioned tables of several
    files: rows 1-3,000 of the UCI file (2010-12-01, moved to November), then rows 15,000-19,998
    (2010-12-07 .. 2010-12-09). Returns (folder, early and late sources, their summaries).
    Tests that change the outputs work on a copy (`_copy`)."""
    root = tmp_path_factory.mktemp("two_runs")
    early = _uci_slice(root / "early.csv", 1, 3000)
    early.write_text(
        early.read_text(encoding="utf-8").replace(",2010-12-01 ", ",2010-11-01 "), encoding="utf-8"
    )
    late = _uci_slice(root / "late.csv", 15000, 19998)
    first = run_job(spark, job_config(early, root / "out"))
    second = run_job(spark, job_config(late, root / "out"))
    return root, early, late, first, second


def _copy(two_runs, to: Path) -> Path:
    """A copy of the two runs' outputs (Delta tables keep relative paths)."""
    shutil.copytree(two_runs[0] / "out", to)
    return to


def test_outputs_are_not_partitioned_and_each_file_is_sorted_by_day(spark, tmp_path):
    src = _uci_slice(tmp_path / "in.csv", 1, 19998, step=5)
    summary = run_job(spark, job_config(src, tmp_path / "out"))
    for name in ("encrypted", "derived/d0"):
        table = tmp_path / "out" / name
        assert not list(table.glob("strmDay=*")), f"{name} is partitioned by day"
        files = active_files(table)
        assert files and all("strmDay" in s["minValues"] for s in files.values())
        for path in files:
            days = pq.read_table(table / path, columns=["strmDay"]).column("strmDay").to_pylist()
            assert days == sorted(days) and len(set(days)) >= 1
    days = (
        spark.read.format("delta")
        .load(str(tmp_path / "out" / "encrypted"))
        .select("strmDay")
        .distinct()
        .count()
    )
    assert days == 8 and summary.rows_encrypted == 4000


def test_partition_by_is_an_option_and_an_existing_table_keeps_its_layout(spark, tmp_path):
    src = _uci_slice(tmp_path / "in.csv", 1, 1500)
    out = tmp_path / "out"
    doc = job_doc(src, out)
    doc["outputs"]["encrypted"] = {"path": str(out / "encrypted"), "partition_by": ["strmDay"]}
    run_job(spark, parse_job_config(doc, "job.yaml", tmp_path))
    assert list((out / "encrypted").glob("strmDay=*"))
    assert not list((out / "derived" / "d0").glob("strmDay=*"))
    # Asked to partition later, the derived table keeps the layout it was created with.
    doc["outputs"]["derived"][0]["partition_by"] = ["strmDay"]
    run_job(spark, parse_job_config(doc, "job.yaml", tmp_path))
    assert not list((out / "derived" / "d0").glob("strmDay=*"))
    assert spark.read.format("delta").load(str(out / "derived" / "d0")).count() == 3000
    # PII fields are never partition values.
    doc["outputs"]["encrypted"]["partition_by"] = ["CustomerID"]
    with pytest.raises(Exception, match="not a column this output can be laid out by"):
        parse_job_config(doc, "job.yaml", tmp_path)


def test_a_run_reads_only_its_days_of_the_key_store_and_data_subjects(spark, two_runs, tmp_path):
    """History of other days lives in files the run must not read: they are deleted, and a
    rerun of the batch (all keys reused) still succeeds."""
    _, _, late, first, second = two_runs
    out = _copy(two_runs, tmp_path / "out")
    assert first.keys_created > 0 and second.keys_created > 0
    late_keys = (
        spark.read.format("delta")
        .load(str(out / "keystore" / "keys"))
        .where(f"runId = '{second.run_id}'")
    )
    bounds = late_keys.agg(
        F.min("day").alias("lo"), F.max("day").alias("hi"), F.min("expiresAt").alias("exp")
    ).first()
    lo, hi = bounds["lo"].isoformat(), bounds["hi"].isoformat()
    removed = 0
    for path, stats in active_files(out / "keystore" / "keys").items():
        f_lo, f_hi = _day_range(stats, "day")
        if f_hi < lo or f_lo > hi:
            (out / "keystore" / "keys" / path).unlink()
            removed += 1
    for path, stats in active_files(out / "data_subjects").items():
        if (
            datetime.fromisoformat(stats["maxValues"]["expiresAt"]).replace(tzinfo=None)
            < bounds["exp"]
        ):
            (out / "data_subjects" / path).unlink()
            removed += 1
    assert removed >= 2, "the history was not in separate files"
    again = run_job(spark, job_config(late, out))
    assert again.keys_created == 0 and again.keys_reused == second.keys_needed
    assert again.data_subject_links_added == 0
    # The rerun's row in the job's table of runs says so.
    runs = spark.read.format("delta").load(again.outputs["run summary"])
    assert (
        json.loads(runs.where(f"runId = '{again.run_id}'").first()["summary"])["keys_created"] == 0
    )


def _delete_files_outside(table: Path, lo: str, hi: str) -> int:
    """Delete the table's data files whose strmDay range misses lo..hi; returns how many."""
    removed = 0
    for path, stats in active_files(table).items():
        f_lo, f_hi = _day_range(stats)
        if f_hi < lo or f_lo > hi:
            (table / path).unlink()
            removed += 1
    return removed


def test_export_and_forget_read_only_the_files_of_the_subjects_days(spark, two_runs, tmp_path):
    """Two runs of different days give unpartitioned tables of several files; the files of
    other days are deleted, and the export and the forget of a subject of the later run
    still succeed with all their rows: they never opened those files."""
    from strm_spark.subjects import export_subject, forget

    _, early, late, _, _ = two_runs
    out = _copy(two_runs, tmp_path / "out")
    config = job_config(late, out)
    csv = spark.read.option("header", True).csv
    earlier = csv(str(early)).select("CustomerID").distinct()
    counts = (
        csv(str(late))
        .where("CustomerID IS NOT NULL")
        .join(earlier, "CustomerID", "left_anti")
        .groupBy("CustomerID")
        .count()
        .orderBy(F.desc("count"), "CustomerID")
    )
    subject, rows = counts.first()
    first = export_subject(spark, config, subject, tmp_path / "before")
    assert first.files["encrypted.jsonl"] == rows
    lo, hi = min(first.partitions_read), max(first.partitions_read)
    assert _delete_files_outside(out / "encrypted", lo, hi) >= 1
    assert _delete_files_outside(out / "derived" / "d0", lo, hi) >= 1
    again = export_subject(spark, config, subject, tmp_path / "after")
    assert again.files == first.files
    report = forget(spark, config, [subject])
    assert report.completed and report.derived_rows_removed == {"decrypted-0": rows}
    # Delta keeps each MERGE's condition in commitInfo: it names whole months, never the
    # forgotten subject's days.
    commits = [
        json.loads(line)["commitInfo"]
        for log in sorted((out / "derived" / "d0" / "_delta_log").glob("*.json"))
        for line in log.read_text().splitlines()
        if '"commitInfo"' in line
    ]
    merges = [c["operationParameters"]["predicate"] for c in commits if c["operation"] == "MERGE"]
    assert merges and all(day not in c for c in merges for day in first.partitions_read)
    assert all(
        re.findall(r"\d{4}-\d{2}-(\d{2})", c)
        and set(re.findall(r"\d{4}-\d{2}-(\d{2})", c)) == {"01"}
        for c in merges
    )


def test_a_failed_run_releases_its_caches_views_and_settings(spark, tmp_path, monkeypatch):
    src = _uci_slice(tmp_path / "in.csv", 1, 500)
    persisted: list[DataFrame] = []

    def recording(self, *args, **kwargs):
        persisted.append(self)
        return original(self, *args, **kwargs)

    cls = type(spark.range(1))  # the session's DataFrame class (classic or Connect)
    original = cls.persist
    monkeypatch.setattr(cls, "persist", recording)
    from strm_spark.pipeline import write

    def broken(*args, **kwargs):
        raise DataError("injected failure")

    monkeypatch.setattr(write, "merge_data_subjects", broken)
    before = spark.conf.get("spark.sql.csv.parser.columnPruning.enabled", None)
    with pytest.raises(DataError, match="injected failure"):
        run_job(spark, job_config(src, tmp_path / "out"))
    assert len(persisted) >= 3  # rows, pairs, keys
    assert all(df.storageLevel == StorageLevel(False, False, False, False, 1) for df in persisted)
    # SHOW TABLES, not catalog.listTables(): the latter's row decoder fails in the suite's
    # interpreted mode (factoryMode NO_CODEGEN) as soon as any table or view exists.
    tables = spark.sql("SHOW TABLES").collect()
    assert not [t for t in tables if t["tableName"].startswith("strm_src")]
    assert spark.conf.get("spark.sql.csv.parser.columnPruning.enabled", None) == before


def test_the_run_summary_is_a_row_of_the_jobs_table_of_runs(spark, two_runs):
    _, _, _, one, two = two_runs
    runs = spark.read.format("delta").load(one.outputs["run summary"])
    assert {r["runId"]: r["rowsRead"] for r in runs.collect()} == {
        one.run_id: 3000,
        two.run_id: 4999,
    }
    summary = json.loads(runs.where(f"runId = '{two.run_id}'").first()["summary"])
    assert summary["keys_created"] == two.keys_created > 0
