"""Forget when the key field is not the subject field: a key link (one session on one day) can
cover several people. Forgetting one of them destroys the shared key, but removes only that
subject's own records: the others keep their data subject entries (with key_present false)
and their rejected rows, and the report counts the rows of theirs that became unreadable."""

from __future__ import annotations

import pytest
from helpers import job_config
from pyspark.sql import functions as F

from strm_spark.pipeline.run import run_job
from strm_spark.subjects import forget, key_links, list_subjects

GONE, STAYS, ALSO = "gone.3391@example.org", "stays.5520@example.org", "also.7043@example.org"
CONTRACT = {
    "schema": {
        "name": "shared sessions",
        "nodes": [
            {"name": "event_id", "type": "STRING", "required": True},
            {"name": "session", "type": "STRING", "required": True},
            {"name": "email", "type": "STRING"},
            {"name": "amount", "type": "INTEGER"},
            {"name": "ts", "type": "STRING"},
        ],
    },
    "key_field": "session",
    "pii_fields": {"email": 1},
    "data_subject_field": "email",
}
ROWS = [
    # one shared session on 2024-02-01: two rows of GONE, two of STAYS, one of ALSO
    ("e1", "s-shared", GONE, "1", "2024-02-01 10:00:00"),
    ("e2", "s-shared", GONE, "2", "2024-02-01 10:05:00"),
    ("e3", "s-shared", STAYS, "3", "2024-02-01 10:10:00"),
    ("e4", "s-shared", STAYS, "4", "2024-02-01 10:15:00"),
    ("e5", "s-shared", ALSO, "5", "2024-02-01 10:20:00"),
    # rejected (amount is no INTEGER) under the shared key: one of GONE, one of STAYS
    ("e6", "s-shared", GONE, "many", "2024-02-01 10:25:00"),
    ("e7", "s-shared", STAYS, "lots", "2024-02-01 10:30:00"),
    # sessions of their own
    ("e8", "s-gone", GONE, "8", "2024-02-02 09:00:00"),
    ("e9", "s-stays", STAYS, "9", "2024-02-03 09:00:00"),
]


@pytest.fixture
def shared_run(spark, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(
        "event_id,session,email,amount,ts\n" + "\n".join(",".join(r) for r in ROWS) + "\n",
        encoding="utf-8",
    )
    config = job_config(
        src,
        tmp_path / "out",
        contract=CONTRACT,
        timestamp={"field": "ts", "pattern": "yyyy-MM-dd HH:mm:ss", "default_time_zone": "UTC"},
    )
    summary = run_job(spark, config)
    assert summary.rows_rejected == 2 and summary.data_subject_links_added == 5
    return config


def test_forget_keeps_the_records_of_others_who_share_a_key_link(spark, shared_run):
    config = shared_run
    report = forget(spark, config, [GONE])
    assert report.completed
    assert (report.key_links, report.shared_key_links, report.other_subjects) == (2, 1, 2)
    # STAYS' two encrypted rows and one rejected row, ALSO's one encrypted row
    assert report.other_subjects_rows_unreadable == 4
    assert report.rejected_rows_removed == 1 and report.subject_entries_removed == 2
    assert report.keys_removed == 2

    assert list_subjects(spark, config).subjects == (ALSO, STAYS)
    links = key_links(spark, config, [STAYS, ALSO, GONE])
    assert links[GONE] == []
    assert sorted((k.day.isoformat() if k.day else "-", k.key_present) for k in links[STAYS]) == [
        ("-", False),
        ("2024-02-03", True),
    ]
    assert [k.key_present for k in links[ALSO]] == [False]

    rejected = spark.read.format("delta").load(config.rejected.path)
    assert rejected.count() == 1 and rejected.first()["amount"] == "lots"
    derived = spark.read.format("delta").load(config.derived[0].path)
    # Derived rows are decrypted copies: those under the destroyed key go with it.
    assert sorted(r["event_id"] for r in derived.collect()) == ["e9"]
    assert "can no longer be decrypted" in " ".join(report.notes)

    again = forget(spark, config, [GONE])
    assert again.completed and again.subjects_found == 0
    assert list_subjects(spark, config).subjects == (ALSO, STAYS)
    assert (
        spark.read.format("delta")
        .load(config.data_subjects.path)
        .where(F.col("dataSubject") == GONE)
        .count()
        == 0
    )
    # Files the erasure rewrote (REORG, VACUUM, the audit table) stay owner-only.
    import stat
    from pathlib import Path

    for top in (
        Path(config.key_store),
        Path(config.derived[0].path),
        Path(config.data_subjects.path),
    ):
        modes = {stat.S_IMODE(p.stat().st_mode) for p in top.rglob("*") if p.is_file()}
        assert modes == {0o600}, top.name
