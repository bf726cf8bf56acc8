"""Source formats and whole-file problems: JSON lines, Parquet, Delta, wrong CSV headers, empty
files, huge fields, bytes that are not valid UTF-8."""

from __future__ import annotations

import json

import pytest
from helpers import job_config, job_doc, key_ring

from strm_spark.config.load import parse_job_config
from strm_spark.crypto import cells as crypto
from strm_spark.errors import DataError
from strm_spark.pipeline.run import run_job
from strm_spark.storage import Location

ROWS = [
    {
        "InvoiceNo": "1",
        "StockCode": "A",
        "Description": "x",
        "Quantity": 2,
        "InvoiceDate": "2010-12-01 23:30:00",
        "UnitPrice": "1.0",
        "CustomerID": "c-1",
        "Country": "NL",
    },
    {
        "InvoiceNo": "2",
        "StockCode": "B",
        "Description": None,
        "Quantity": 1,
        "InvoiceDate": "2010-12-02 00:30:00",
        "UnitPrice": "2.0",
        "CustomerID": "c-1",
        "Country": "NL",
    },
    {
        "InvoiceNo": "3",
        "StockCode": "C",
        "Description": "z",
        "Quantity": None,
        "InvoiceDate": "2010-12-02 08:00:00",
        "UnitPrice": "3.0",
        "CustomerID": None,
        "Country": "NL",
    },
]


def _decrypted_ids(spark, config):
    keys = key_ring(spark, config.key_store)
    enc = spark.read.format("delta").load(config.encrypted.path).collect()
    return sorted(
        (
            r["InvoiceNo"],
            crypto.decrypt(keys[r["strmMeta"]["keyLink"]], r["CustomerID"]),
            r["strmMeta"]["keyLink"],
        )
        for r in enc
    )


def _check(spark, config, summary, rejected=0):
    assert summary.rows_read == len(ROWS) + rejected
    assert summary.rows_rejected == rejected
    got = _decrypted_ids(spark, config)
    assert [(i, c) for i, c, _ in got] == [("1", "c-1"), ("2", "c-1"), ("3", None)]
    # 23:30 and 00:30 Amsterdam time are both Dec 1 in UTC: one key for c-1.
    assert got[0][2] == got[1][2]
    assert summary.keys_needed == 2


def test_json_lines_source_with_a_broken_line(spark, tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps(r) for r in ROWS] + [
        '{"InvoiceNo": "4", "CustomerID": "c-9", broken',
        '{"InvoiceNo": "5", "CustomerID": "c-\udce9"}',
    ]
    src.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
    config = job_config(src, tmp_path / "out", fmt="json")
    summary = run_job(spark, config)
    _check(spark, config, summary, rejected=2)
    assert summary.rejected_by_reason == {
        "malformed record (not valid JSON)": 1,  # JSON's own reason, not CSV's (#33)
        "malformed record (not valid UTF-8 text)": 1,
    }


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
def test_parquet_and_delta_sources(spark, tmp_path, fmt):
    schema = (
        "InvoiceNo string, StockCode string, Description string, Quantity int, InvoiceDate string, "
        "UnitPrice string, CustomerID string, Country string, extra string"
    )
    df = spark.createDataFrame([(*r.values(), "ignored") for r in ROWS], schema)
    df.write.format(fmt).save(str(tmp_path / "src"))
    config = job_config(tmp_path / "src", tmp_path / "out", fmt=fmt)
    _check(spark, config, run_job(spark, config))


def test_a_source_table_by_name(spark, tmp_path):
    """`source: {table: ...}`: a batch read of a catalog table (#31); here an external Delta
    table of the session's catalog, so nothing lands in the working directory's warehouse."""
    schema = (
        "InvoiceNo string, StockCode string, Description string, Quantity int, InvoiceDate string, "
        "UnitPrice string, CustomerID string, Country string"
    )
    spark.createDataFrame([tuple(r.values()) for r in ROWS], schema).write.format("delta").save(
        str(tmp_path / "src")
    )
    table = f"strm_src_{tmp_path.name[-8:].replace('-', '_')}"
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table} LOCATION '{tmp_path / 'db'}'")
    spark.sql(f"CREATE TABLE {table}.events USING delta LOCATION '{tmp_path / 'src'}'")
    try:
        doc = job_doc(tmp_path / "unused", tmp_path / "out")
        doc["source"] = {"table": f"{table}.events"}
        config = parse_job_config(doc, "job.yaml", tmp_path)
        assert config.source.path == Location(f"{table}.events", "table")
        summary = run_job(spark, config)
        assert summary.source == f"{table}.events"
        _check(spark, config, summary)
    finally:
        spark.sql(f"DROP SCHEMA {table} CASCADE")


def test_parquet_source_missing_a_contract_field_is_a_clear_error(spark, tmp_path):
    spark.createDataFrame([("1", "x")], "InvoiceNo string, Other string").write.parquet(
        str(tmp_path / "src")
    )
    config = job_config(tmp_path / "src", tmp_path / "out", fmt="parquet")
    with pytest.raises(DataError, match="lacks contract field.*StockCode"):
        run_job(spark, config)


def test_csv_with_a_different_header_names_the_file(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.csv").write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "1,A,x,1,2010-12-01 08:00:00,1.0,c-1,NL\n"
    )
    (src / "swapped.csv").write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,Country,CustomerID\n"
        "2,B,y,1,2010-12-01 08:00:00,1.0,NL,c-2\n"
    )
    config = job_config(src, tmp_path / "out")
    with pytest.raises(DataError) as info:
        run_job(spark, config)
    message = str(info.value)
    assert "swapped.csv" in message and "column 7 of 8 is not 'CustomerID'" in message
    assert "c-2" not in message
    assert not (tmp_path / "out" / "encrypted").exists()


HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def _csv_lines(rows):
    return ["" if v is None else str(v) for v in rows]


def _write_csv(path, rows, header=HEADER):
    lines = [header] + [",".join(_csv_lines(r.values())) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_empty_and_header_only_files_add_nothing_and_break_nothing(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _write_csv(src / "rows.csv", ROWS)
    (src / "empty.csv").write_bytes(b"")
    (src / "header-only.csv").write_text(HEADER + "\n")
    config = job_config(src, tmp_path / "out")
    _check(spark, config, run_job(spark, config))


def test_only_empty_files_is_a_run_of_zero_rows(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "empty.csv").write_bytes(b"")
    config = job_config(src, tmp_path / "out")
    summary = run_job(spark, config)
    assert (summary.rows_read, summary.rows_encrypted, summary.rows_rejected) == (0, 0, 0)


def test_csv_missing_a_column_names_the_file(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _write_csv(src / "good.csv", ROWS[:1])
    (src / "short.csv").write_text(
        HEADER.removesuffix(",Country") + "\n9,Z,z,1,2010-12-01 08:00:00,1.0,c-7\n"
    )
    config = job_config(src, tmp_path / "out")
    with pytest.raises(DataError) as info:
        run_job(spark, config)
    message = str(info.value)
    assert "short.csv" in message and "c-7" not in message
    assert not (tmp_path / "out" / "encrypted").exists()


def test_a_huge_pii_field_round_trips(spark, tmp_path):
    huge = "c-" + "9" * (4 << 20)  # a 4 MiB customer id
    rows = [dict(ROWS[0]), dict(ROWS[1], CustomerID=huge)]
    src = tmp_path / "in.csv"
    _write_csv(src, rows)
    config = job_config(src, tmp_path / "out")
    summary = run_job(spark, config)
    assert (summary.rows_encrypted, summary.rows_rejected) == (2, 0)
    got = _decrypted_ids(spark, config)
    assert [c == huge for _, c, _ in got] == [False, True]
    assert got[0][2] != got[1][2]  # different customers, different keys


# A valid JSON record of the UCI contract, but its CustomerID.
JSON_ROW = {
    "InvoiceNo": "1",
    "StockCode": "A",
    "Description": "x",
    "Quantity": 1,
    "InvoiceDate": "2010-12-01 08:00:00",
    "UnitPrice": "1.0",
    "Country": "NL",
}


def test_a_broken_json_record_naming_a_forgotten_subject_stays_out(spark, tmp_path):
    """A JSON line that does not parse but names a forgotten subject is dropped by the
    tombstone check on a rerun, not kept in the rejected table where an export would find it
    (#33 defect 3)."""
    from strm_spark.contract.records import raw_record_values
    from strm_spark.subjects.erasure import forget
    from strm_spark.subjects.export import export_subject

    broken = '{"InvoiceNo":"9","CustomerID":"S10","Description":"x@y.example", broken'
    assert "S10" in raw_record_values(broken, "json", "CustomerID", ",")
    src = tmp_path / "in"
    src.mkdir()
    lines = [json.dumps({**JSON_ROW, "CustomerID": c}) for c in ("S10", "S11")]
    (src / "a.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = job_config(src, tmp_path / "out", fmt="json")
    run_job(spark, config)
    assert forget(spark, config, ["S10"]).completed
    (src / "a.json").write_text("\n".join([*lines, broken]) + "\n", encoding="utf-8")
    rerun = run_job(spark, config)
    assert rerun.rows_tombstoned == 2 and rerun.rows_rejected == 0, rerun.render()
    rejected = spark.read.format("delta").load(config.rejected.path)
    assert rejected.count() == 0
    export = export_subject(spark, config, "S10", tmp_path / "export")
    assert "x@y.example" not in "".join(
        p.read_text(encoding="utf-8") for p in (tmp_path / "export").iterdir()
    ), export.render()


def test_json_records_get_json_reasons_and_non_strings_in_string_fields_are_kept(spark, tmp_path):
    """A JSON line that does not parse, or holds a value of the wrong JSON type, is rejected
    with a JSON reason, not the CSV wording; a number or boolean in a STRING field is kept as
    its JSON text, as Spark's JSON reader reads it (documented in docs/configuration.md)
    (#33 defect 9)."""
    src = tmp_path / "in"
    src.mkdir()
    lines = [
        json.dumps({**JSON_ROW, "CustomerID": 98765431}),
        json.dumps({**JSON_ROW, "CustomerID": "S2", "Quantity": "many"}),
        '{"InvoiceNo": "3", "CustomerID": "S3", broken',
    ]
    (src / "a.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = job_config(src, tmp_path / "out", fmt="json")
    summary = run_job(spark, config)
    assert summary.rows_encrypted == 1 and summary.rows_rejected == 2
    reasons = sorted(
        r
        for row in spark.read.format("delta").load(config.rejected.path).collect()
        for r in row["rejectReasons"]
    )
    assert reasons == [
        "malformed record (JSON that is not an object of the contract's types: a value of the "
        "wrong JSON type)",
        "malformed record (not valid JSON)",
    ]
    subjects = spark.read.format("delta").load(config.data_subjects.path).collect()
    assert [r["dataSubject"] for r in subjects] == ["98765431"]
