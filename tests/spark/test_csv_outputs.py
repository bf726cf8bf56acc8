"""CSV (#16 item 12): native CSV outputs neutralise formula cells (OWASP), and quoted fields
with embedded newlines are read with `multiLine: true`, with correct record numbers."""

from __future__ import annotations

import csv

import pytest
from helpers import job_doc

from strm_spark.config.load import parse_job_config
from strm_spark.pipeline.run import run_job

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
ROWS = [
    "536365,85123A,=HYPERLINK(A1),6,2010-12-01 08:26:00,2.55,17850,United Kingdom",
    "536366,71053,+SUM(A1:A9),6,2010-12-01 08:28:00,3.39,17851,United Kingdom",
    "536367,84406B,@cmd,8,2010-12-01 08:34:00,2.75,17852,United Kingdom",
    "536368,84029G,-2+3,6,2010-12-01 08:34:00,3.39,17853,United Kingdom",
    "536369,84029E,PLAIN TEXT,6,2010-12-01 08:34:00,3.39,17854,United Kingdom",
]


def _cells(folder):
    out = {}
    for part in sorted(folder.glob("part-*.csv")):
        with open(part, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                out[r["InvoiceNo"]] = r["Description"]
    return out


@pytest.mark.parametrize("guard", [True, False])
def test_native_csv_outputs_neutralise_formula_cells(spark, tmp_path, guard):
    src = tmp_path / "in.csv"
    src.write_text(HEADER + "\n" + "\n".join(ROWS) + "\n", encoding="utf-8")
    doc = job_doc(src, tmp_path / "out")
    doc["outputs"]["derived"][0]["format"] = "csv"
    if not guard:
        doc["outputs"]["csv_formula_guard"] = False
    run_job(spark, parse_job_config(doc, "job.yaml", tmp_path))
    cells = _cells(tmp_path / "out" / "derived" / "d0")
    raw = {"536365": "=HYPERLINK(A1)", "536366": "+SUM(A1:A9)", "536367": "@cmd", "536368": "-2+3"}
    expected = {k: ("'" + v if guard else v) for k, v in raw.items()} | {"536369": "PLAIN TEXT"}
    assert cells == expected


def test_quoted_newlines_are_read_with_multiline_and_rows_keep_their_numbers(spark, tmp_path):
    src = tmp_path / "in.csv"
    lines = [
        HEADER,
        '536370,A1,"TWO\nLINES",1,2010-12-01 09:00:00,1.0,17860,United Kingdom',
        '536371,A2,"THREE\nLINES\nHERE",1,2010-12-01 09:01:00,1.0,17861,United Kingdom',
        "536372,A3,BAD QTY,many,2010-12-01 09:02:00,1.0,17862,United Kingdom",
        "536373,A4,FINE,1,2010-12-01 09:03:00,1.0,17863,United Kingdom",
    ]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = job_doc(src, tmp_path / "out")
    doc["source"]["options"] = {"multiLine": True}
    summary = run_job(spark, parse_job_config(doc, "job.yaml", tmp_path))
    assert (summary.rows_read, summary.rows_encrypted, summary.rows_rejected) == (4, 3, 1)
    derived = {
        r["InvoiceNo"]: r["Description"]
        for r in spark.read.format("delta").load(str(tmp_path / "out/derived/d0")).collect()
    }
    assert derived["536370"] == "TWO\nLINES" and derived["536371"] == "THREE\nLINES\nHERE"
    rejected = spark.read.format("delta").load(str(tmp_path / "out/rejected")).collect()
    assert [(r["InvoiceNo"], r["rowNumber"]) for r in rejected] == [
        ("536372", 3)
    ]  # records, not lines
