"""Creating Delta tables while another process creates the same one."""

from __future__ import annotations

import shutil
import threading

import pytest
from delta.tables import DeltaTable
from pyspark.sql import types as T

from strm_spark.errors import TableError
from strm_spark.storage import tables as delta_tables

SCHEMA = T.StructType([T.StructField("a", T.StringType())])


def test_create_waits_for_a_table_another_writer_is_creating(spark, tmp_path):
    """A `_delta_log` folder without a commit (another process between making the folder and
    committing) is waited for, not reported as a non-Delta location."""
    done = tmp_path / "done"
    delta_tables.create_table(spark, str(done), SCHEMA)
    target = tmp_path / "t"
    (target / "_delta_log").mkdir(parents=True)
    (target / "_delta_log" / "_staged_commits").mkdir()
    (target / "part-0.parquet").write_bytes(b"")  # the location is not empty

    def commit() -> None:
        for f in (done / "_delta_log").glob("*.json"):
            shutil.copy(f, target / "_delta_log" / f.name)

    timer = threading.Timer(1.5, commit)
    timer.start()
    try:
        delta_tables.create_table(spark, str(target), SCHEMA)
    finally:
        timer.join()
    assert DeltaTable.isDeltaTable(spark, str(target))


def test_a_log_folder_that_never_gets_a_commit_is_a_clear_error(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(delta_tables, "_CREATE_ATTEMPTS", 2)
    target = tmp_path / "t"
    (target / "_delta_log").mkdir(parents=True)
    (target / "part-0.parquet").write_bytes(b"")
    with pytest.raises(TableError, match="a Delta log folder exists but no table appeared"):
        delta_tables.create_table(spark, str(target), SCHEMA)
