"""Invalid rows are quarantined, encrypted and located; the rest of the job succeeds."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from conftest import UCI_CSV, require_shared
from helpers import UCI_CONTRACT_DOC, job_config
from pyspark.sql import functions as F

from strm_spark.crypto import cells as crypto
from strm_spark.pipeline.run import run_job

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
# (line, customer id, reason); customer ids are unique so leaks can be searched for.
BAD = [
    (
        "800001,X1,BAD TS,1,2010-13-45 25:61,1.0,99001,United Kingdom",
        "99001",
        "timestamp field 'InvoiceDate' does not match pattern 'yyyy-MM-dd HH:mm:ss'",
    ),
    # Source text shifted into a field that is not PII (StockCode): a bad row can hold anything.
    (
        "800002,shifted.victim@example.com,BAD QTY,three,2010-12-01 09:00:00,1.0,99002,United Kingdom",
        "99002",
        "field 'Quantity' is not a valid INTEGER",
    ),
    (
        "800003,X3,EXTRA,1,2010-12-01 09:00:00,1.0,99003,United Kingdom,surplus",
        "99003",
        "malformed record (wrong number of fields or bad quoting)",
    ),
    (
        "800004,X4,NO TS,1,,1.0,99004,United Kingdom",
        "99004",
        "timestamp field 'InvoiceDate' is missing",
    ),
    (
        "800005,X5,BAD COUNTRY,1,2010-12-02 09:00:00,1.0,99005,uk!",
        "99005",
        "field 'Country' does not match regex '[A-Z][A-Za-z ]+'",
    ),
    # A Latin-1 byte in a UTF-8 file (written with surrogateescape): Spark reads it as U+FFFD.
    (
        "800006,X6,CAF\udce9 AU LAIT,1,2010-12-02 09:00:00,1.0,99006,United Kingdom",
        "99006",
        "field 'Description' is not valid UTF-8 text",
    ),
]
GOOD_PER_FILE = 150


@pytest.fixture(scope="module")
def reject_run(spark, tmp_path_factory):
    require_shared()
    root = tmp_path_factory.mktemp("rejects")
    src = root / "input"
    src.mkdir()
    lines = UCI_CSV.read_text(encoding="utf-8").splitlines()[1:]
    files = {}
    # Two files; bad rows spread over both, at known record numbers.
    for f, (good, bad) in enumerate(
        [(lines[:GOOD_PER_FILE], BAD[:2]), (lines[GOOD_PER_FILE : 2 * GOOD_PER_FILE], BAD[2:])]
    ):
        rows = list(good)
        positions = {}
        for i, (line, cid, _) in enumerate(bad):
            at = 10 + 40 * i
            rows.insert(at, line)
            positions[cid] = at + 1
        path = src / f"part-{f}.csv"
        path.write_bytes(
            (HEADER + "\n" + "\n".join(rows) + "\n").encode("utf-8", "surrogateescape")
        )
        files[path] = positions
    contract = copy.deepcopy(UCI_CONTRACT_DOC)
    contract["validations"] = [{"field": "Country", "type": "regex", "value": "[A-Z][A-Za-z ]+"}]
    out = root / "out"
    config = job_config(src, out, contract=contract)
    # Small splits: each file is read in several blocks, which row numbers must survive.
    before = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    spark.conf.set("spark.sql.files.openCostInBytes", "0")
    try:
        summary = run_job(spark, config)
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", before)
        spark.conf.unset("spark.sql.files.openCostInBytes")
    return config, summary, files


def test_summary_counts_rejects_by_reason(reject_run):
    _, summary, _ = reject_run
    assert summary.rows_read == 2 * GOOD_PER_FILE + len(BAD)
    assert summary.rows_rejected == len(BAD)
    assert summary.rows_encrypted == 2 * GOOD_PER_FILE
    assert summary.rejected_by_reason == {reason: 1 for _, _, reason in BAD}
    assert summary.quarantine_key


def test_valid_rows_still_succeed(spark, reject_run):
    config, _, _ = reject_run
    enc = spark.read.format("delta").load(config.encrypted.path)
    assert enc.count() == 2 * GOOD_PER_FILE
    assert enc.where(F.col("InvoiceNo").startswith("80000")).count() == 0


def test_rejected_rows_are_located_and_encrypted(spark, reject_run):
    config, _, files = reject_run
    rejected = spark.read.format("delta").load(config.rejected.path)
    keys = {
        r["keyLink"]: (bytes(r["keyset"]), r["kind"])
        for r in spark.read.format("delta").load(f"{config.key_store}/keys").collect()
    }
    rows = rejected.collect()
    assert len(rows) == len(BAD)
    expected_location = {
        cid: (str(path), n) for path, pos in files.items() for cid, n in pos.items()
    }
    by_line = {cid: (line, reason) for line, cid, reason in BAD}
    for r in rows:
        keyset, kind = keys[r["strmMeta"]["keyLink"]]
        if r["rawRecord"] is not None:
            raw = crypto.decrypt(keyset, r["rawRecord"])
            cid = raw.split(",")[6]
            assert raw == by_line[cid][0]
            assert all(r[f] is None for f in ("InvoiceNo", "CustomerID", "Country"))
            assert kind == "quarantine"
        else:
            cid = crypto.decrypt(keyset, r["CustomerID"])
            assert r["CustomerID"] != cid
        assert r["rejectReasons"] == [by_line[cid][1]]
        path, number = expected_location[cid]
        assert r["sourceFile"].endswith(path) and r["rowNumber"] == number, cid
        assert kind == ("row" if r["strmMeta"]["timestamp"] is not None else "quarantine")
    qty = next(r for r in rows if r["rejectReasons"] == [BAD[1][2]])
    assert qty["Quantity"] == "three"  # the text as read, kept for repair


def test_no_plaintext_of_rejected_pii_anywhere_in_outputs(reject_run):
    config, _, _ = reject_run
    # Bounded by non-digits: a Delta log's millisecond timestamps can contain "99002" by chance.
    ids = [re.compile(rb"(?<![0-9])" + cid.encode() + rb"(?![0-9])") for _, cid, _ in BAD]
    roots = [
        Path(config.rejected.path),
        Path(config.encrypted.path),
        Path(config.key_store),
        Path(config.data_subjects.path),
        Path(config.derived[0].path),
    ]
    checked = 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and (path.suffix == ".json" or "_delta_log" in path.parts):
                data = path.read_bytes()
                checked += 1
                assert not [i.pattern for i in ids if i.search(data)], f"plaintext id in {path}"
    assert checked > 5
    stats = [
        json.loads(json.loads(line)["add"]["stats"])
        for log in (Path(config.rejected.path) / "_delta_log").glob("*.json")
        for line in log.read_text().splitlines()
        if '"add"' in line and '"stats"' in line
    ]
    assert stats and all("CustomerID" not in s.get("minValues", {}) for s in stats)
    # Any source field of a bad row can hold anything: only what the job writes keeps statistics.
    assert all(
        set(s.get("minValues", {}))
        <= {"sourceFile", "rowNumber", "runId", "rejectedAt", "strmMeta"}
        for s in stats
    )
    for path in (p for p in (Path(config.rejected.path) / "_delta_log").rglob("*") if p.is_file()):
        assert b"shifted.victim" not in path.read_bytes(), f"shifted source text in {path.name}"


def test_data_subjects_skip_quarantined_rows(spark, reject_run):
    config, _, _ = reject_run
    subjects = {
        r["dataSubject"]
        for r in spark.read.format("delta").load(config.data_subjects.path).collect()
    }
    assert "99002" in subjects and "99005" in subjects  # rejected but with a known day
    assert not {"99001", "99003", "99004"} & subjects  # quarantined: no per-subject key


def test_a_rerun_that_only_needs_its_quarantine_key_appends_it(spark, tmp_path):
    """All row keys exist already: the run commits just its own quarantine key and uses it."""
    require_shared()
    src = tmp_path / "input"
    src.mkdir()
    good = UCI_CSV.read_text(encoding="utf-8").splitlines()[1:21]
    (src / "part-0.csv").write_text("\n".join([HEADER, *good, BAD[0][0]]) + "\n", encoding="utf-8")
    config = job_config(src, tmp_path / "out")
    first = run_job(spark, config)
    second = run_job(spark, config)
    assert (
        first.keys_created > 0
        and second.keys_created == 0
        and second.keys_reused == first.keys_created
    )
    assert first.quarantine_key and second.quarantine_key
    keys = spark.read.format("delta").load(f"{config.key_store}/keys")
    quarantine = {
        r["keyLink"]: bytes(r["keyset"]) for r in keys.where("kind = 'quarantine'").collect()
    }
    assert len(quarantine) == 2
    rejected = spark.read.format("delta").load(config.rejected.path).collect()
    assert sorted(r["strmMeta"]["keyLink"] for r in rejected) == sorted(quarantine)
    for r in rejected:  # each run's bad row decrypts under that run's own quarantine key
        assert crypto.decrypt(quarantine[r["strmMeta"]["keyLink"]], r["CustomerID"]) == "99001"


def test_counts_equal_the_outputs_rows(spark, reject_run):
    """The summary's counts come from the run's one scan, not from the outputs: each must
    equal the rows the outputs hold (a scan and a write that read the source differently
    would not)."""
    config, summary, _ = reject_run
    load = spark.read.format("delta").load
    assert load(config.encrypted.path).count() == summary.rows_encrypted
    assert load(config.rejected.path).count() == summary.rows_rejected
    assert summary.rows_encrypted + summary.rows_rejected == summary.rows_read
    assert load(config.data_subjects.path).count() == summary.data_subject_links_added
    keys = load(f"{config.key_store}/keys").where(F.col("kind") == "row").count()
    assert keys == summary.keys_needed == summary.keys_created


@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_no_rejected_row_writes_the_rejected_table_without_reading_the_rows(spark, tmp_path, mode):
    """With no row rejected the rejected table is created (append) or emptied (overwrite)
    without evaluating the rows: a plan that fails on any row it reads still succeeds."""
    from strm_spark.pipeline.write import write_rejected

    config = job_config(tmp_path / "in.csv", tmp_path / "out")
    poisoned = spark.range(3).select(
        F.raise_error(F.lit("the rows were read")).cast("string").alias("InvoiceNo"),
        F.raise_error(F.lit("the rows were read")).cast("array<string>").alias("rejectReasons"),
    )
    path = config.rejected.path
    spark.createDataFrame([("old", ["r"])], poisoned.schema).write.format("delta").save(path)
    write_rejected(spark, poisoned, config, mode, None, any_rejected=False)
    left = spark.read.format("delta").load(path).count()
    assert left == (1 if mode == "append" else 0)
    with pytest.raises(Exception, match="the rows were read"):
        write_rejected(spark, poisoned, config, "append", None, any_rejected=True)


def test_rejected_rows_come_from_the_scan_without_a_second_read(spark, reject_run):
    """The scan keeps every column of each rejected row, so the rejected table is made from its
    groups, not from a second read of the source: they equal the validated rows' rejects."""
    from chispa import assert_df_equality

    from strm_spark import columns as cols
    from strm_spark.pipeline import keys
    from strm_spark.pipeline.read import read_source
    from strm_spark.pipeline.validate import with_validation

    config, _, _ = reject_run
    rows = with_validation(read_source(spark, config.source, config.contract), config)
    groups = keys.scan(rows, config).cache()
    try:
        from_scan = keys.rejected_source(groups)
        expected = rows.where(F.size(cols.REASONS) > 0)
        assert from_scan.columns == expected.columns
        assert from_scan.count() == len(BAD)
        assert_df_equality(from_scan, expected, ignore_row_order=True, ignore_nullable=True)
        valid_groups = groups.where(F.col(cols.REJECTED_ROW).isNull())
        assert valid_groups.agg(F.sum("n")).first()[0] == 2 * GOOD_PER_FILE
    finally:
        groups.unpersist()
