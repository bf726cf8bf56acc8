"""Incremental runs: new files only, exactly once under SIGKILL and concurrent runs."""

from __future__ import annotations

import csv
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import UCI_CSV, require_shared
from helpers import cli_process, job_config, job_doc, key_ring, kill_all_when
from pyspark.sql import functions as F

from strm_spark.errors import ConfigError, DataError
from strm_spark.pipeline.run import run_job


def _uci_lines() -> list[str]:
    require_shared()
    return UCI_CSV.read_text(encoding="utf-8").splitlines()


def _write_part(folder: Path, name: str, lines: list[str], start: int, count: int) -> list[str]:
    """A CSV file of UCI rows [start, start + count) with the header; returns its rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = lines[1 + start : 1 + start + count]
    (folder / name).write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
    return rows


def _incremental_doc(src: Path, out: Path, **overrides) -> dict:
    doc = job_doc(src, out, **overrides)
    doc["source"]["incremental"] = True
    return doc


def _config(src: Path, out: Path, **overrides):
    from strm_spark.config.load import parse_job_config

    return parse_job_config(_incremental_doc(src, out, **overrides), "test.yaml", out)


def _check_exactly_once(spark, out: Path, source_rows: list[str]) -> None:
    """Every source row in the encrypted table exactly once (and in the derived table, all
    rows have consent 2 here), every key link used has a key, and no (group, value, day) has
    two keys."""
    enc = spark.read.format("delta").load(str(out / "encrypted"))
    derived = spark.read.format("delta").load(str(out / "derived" / "d0"))
    expected = Counter(
        (r["InvoiceNo"], r["StockCode"], r["InvoiceDate"], r["Quantity"])
        for r in csv.DictReader([_uci_lines()[0], *source_rows])
    )
    for table in (enc, derived):
        got = Counter(
            (r["InvoiceNo"], r["StockCode"], r["InvoiceDate"], str(r["Quantity"]))
            for r in table.select("InvoiceNo", "StockCode", "InvoiceDate", "Quantity").collect()
        )
        assert got == expected
    keys = spark.read.format("delta").load(str(out / "keystore" / "keys"))
    dupes = keys.groupBy("groupId", "keyHash", "day").count().where("count > 1").count()
    assert dupes == 0, "a (group, value, day) has two keys"
    links = {r["keyLink"] for r in enc.select("strmMeta.keyLink").collect()}
    assert links <= set(key_ring(spark, str(out / "keystore")))


def test_only_new_files_then_nothing_then_reprocess(spark, tmp_path):
    lines = _uci_lines()
    src, out = tmp_path / "in", tmp_path / "out"
    rows = _write_part(src, "part-1.csv", lines, 0, 120)
    config = _config(src, out)
    first = run_job(spark, config)
    assert first.rows_read == 120 and first.batch == {
        "id": 0,
        "files": 1,
        "resumed": False,
        "mode": "append",
    }

    idle = run_job(spark, config)
    assert idle.rows_read == 0 and idle.batch is None
    assert "no new files in the source: nothing to do" in idle.notes

    rows += _write_part(src, "part-2.csv", lines, 120, 80)
    (src / "_SUCCESS").write_text("")  # markers and hidden files are not data
    second = run_job(spark, config)
    assert second.rows_read == 80 and second.batch["id"] == 1
    _check_exactly_once(spark, out, rows)

    again = run_job(spark, config, reprocess=True)
    assert again.rows_read == 200 and again.keys_created == 0 and again.batch["mode"] == "overwrite"
    _check_exactly_once(spark, out, rows)


def test_max_rejected_fraction_fails_before_any_commit(spark, tmp_path):
    lines = _uci_lines()
    src, out = tmp_path / "in", tmp_path / "out"
    _write_part(src, "part-1.csv", lines, 0, 50)
    with open(src / "part-1.csv", "a", encoding="utf-8") as fh:
        fh.write("536999,X,BAD DATE,1,not a date,1.0,12345,United Kingdom\n")
    config = _config(src, out, max_rejected_fraction=0.01)
    with pytest.raises(
        DataError, match=r"1 of 51 rows rejected \(2.0%\), above max_rejected_fraction 0.01"
    ) as err:
        run_job(spark, config)
    assert "12345" not in str(err.value)
    assert (
        not (out / "encrypted").exists()
        and not (out / "keystore" / "keys" / "_delta_log" / "00000000000000000001.json").exists()
    )
    assert run_job(spark, _config(src, out, max_rejected_fraction=0.05)).rows_rejected == 1


def test_incremental_config_errors(tmp_path):
    doc = _incremental_doc(tmp_path / "in", tmp_path / "out")
    doc["outputs"]["encrypted"] = {"path": str(tmp_path / "out" / "enc"), "format": "parquet"}
    from strm_spark.config.load import parse_job_config

    with pytest.raises(
        ConfigError, match="source.incremental.*Delta tables only; outputs.encrypted is parquet"
    ):
        parse_job_config(doc, "job.yaml", tmp_path)
    with pytest.raises(ConfigError, match="max_rejected_fraction.*from 0 to 1"):
        job_config(tmp_path / "in", tmp_path / "out", max_rejected_fraction=2)


# ---------------------------------------------------------------- SIGKILL and concurrency


def _finish(proc: subprocess.Popen) -> str:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


def test_sigkill_at_several_points_then_rerun_is_exactly_once(spark, tmp_path):
    lines = _uci_lines()
    # Kill right after: new keys committed (table creation is commit 0), the encrypted table's
    # data commit (the derived write is running), the derived table's data commit. Each point
    # is its own job, folder and key store; the three processes run at the same time.
    points = {
        "keys": ("keystore/keys", 2),
        "encrypted": ("encrypted", 2),
        "derived": ("derived/d0", 2),
    }
    runs = []
    for name, (table, commits) in points.items():
        src, out = tmp_path / name / "in", tmp_path / name / "out"
        rows = _write_part(src, "part-0.csv", lines, 150 * len(runs), 150)
        job = tmp_path / name / "job.yaml"
        job.write_text(yaml.safe_dump(_incremental_doc(src, out)))
        runs.append(
            (
                src,
                out,
                rows,
                cli_process("run", str(job), cwd=tmp_path / name),
                out / table,
                commits,
            )
        )
    kill_all_when([(proc, table, commits) for *_, proc, table, commits in runs])
    for src, out, rows, *_ in runs:
        rerun = run_job(
            spark, _config(src, out)
        )  # resumes the unfinished batch (in this process: quicker)
        assert rerun.batch == {"id": 0, "files": 1, "resumed": True, "mode": "append"}
        assert "resumed after an unfinished run" in rerun.render()
        _check_exactly_once(spark, out, rows)
        # Counts after a resume are never negative and match the key store.
        row_keys = (
            spark.read.format("delta")
            .load(str(out / "keystore" / "keys"))
            .where("kind = 'row'")
            .count()
        )
        assert rerun.keys_created >= 0 and rerun.keys_reused >= 0
        assert rerun.keys_created + rerun.keys_reused == rerun.keys_needed == row_keys


def test_two_jobs_of_one_group_at_once_converge_on_one_key_per_day(spark, tmp_path):
    lines = _uci_lines()
    src_a, src_b, shared = tmp_path / "a", tmp_path / "b", tmp_path / "keystore"
    _write_part(src_a, "part.csv", lines, 0, 400)
    _write_part(src_b, "part.csv", lines, 200, 400)  # rows 200..399 in both
    procs = []
    for name, src in (("job_a", src_a), ("job_b", src_b)):
        out = tmp_path / f"out-{name}"
        doc = _incremental_doc(src, out, name=name)
        doc["keys"]["store"] = str(shared)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    for name in ("job_a", "job_b"):
        procs.append(cli_process("run", str(tmp_path / f"{name}.yaml"), cwd=tmp_path))
    for proc in procs:
        _finish(proc)
    keys = spark.read.format("delta").load(str(shared / "keys"))
    assert keys.groupBy("groupId", "keyHash", "day").count().where("count > 1").count() == 0
    ring = key_ring(spark, str(shared))
    links = {}
    for name in ("job_a", "job_b"):
        enc = spark.read.format("delta").load(str(tmp_path / f"out-{name}" / "encrypted"))
        for r in (
            enc.where(F.col("CustomerID").isNotNull())
            .select("InvoiceNo", "StockCode", "strmMeta.keyLink")
            .collect()
        ):
            assert r["keyLink"] in ring
            links.setdefault((r["InvoiceNo"], r["StockCode"]), set()).add(r["keyLink"])
    # The overlapping rows were encrypted with the same (winning) key by both jobs.
    assert any(len(v) == 1 for v in links.values())
    assert all(len(v) == 1 for v in links.values())
