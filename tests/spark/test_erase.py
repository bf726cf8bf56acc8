"""What a purge finds to do, read from a table's history alone: whether anything is pending,
and whether deletion vectors call for a REORG first."""

from __future__ import annotations

from strm_spark.storage import erase
from strm_spark.storage.tables import sql_path


def _table(spark, path, dvs: bool) -> str:
    spark.sql(
        f"CREATE TABLE {sql_path(path)} (id INT) USING delta "
        f"TBLPROPERTIES ('delta.enableDeletionVectors' = '{str(dvs).lower()}')"
    )
    spark.range(6).selectExpr("CAST(id AS INT) AS id").write.format("delta").mode("append").save(
        path
    )
    return path


def test_pending_purge_reads_deletes_and_deletion_vectors_from_history(spark, tmp_path):
    dv = _table(spark, str(tmp_path / "dv"), dvs=True)
    cow = _table(spark, str(tmp_path / "cow"), dvs=False)
    # Appends alone leave nothing behind.
    assert erase.pending_purge(spark, dv) is None and erase.pending_purge(spark, cow) is None

    spark.sql(f"DELETE FROM {sql_path(dv)} WHERE id = 1")
    spark.sql(f"DELETE FROM {sql_path(cow)} WHERE id = 1")
    assert erase.pending_purge(spark, dv) == erase.Pending(2, deletion_vectors=True)
    assert erase.pending_purge(spark, cow) == erase.Pending(2, deletion_vectors=False)

    counts = erase.purge(spark, {p: erase.pending_purge(spark, p) for p in (dv, cow)})
    assert counts[dv].files_rewritten == 1 and counts[dv].files_removed >= 1
    assert counts[cow].files_rewritten == 0 and counts[cow].files_removed >= 1
    # A completed VACUUM ends what is pending.
    assert erase.pending_purge(spark, dv) is None and erase.pending_purge(spark, cow) is None

    # An operation the history does not meter (RESTORE) counts as a removal, and as leaving
    # deletion vectors where the table has them on.
    for path in (dv, cow):
        before_append = erase.version(spark, path)
        spark.range(1).selectExpr("7 AS id").write.format("delta").mode("append").save(path)
        spark.sql(f"RESTORE TABLE {sql_path(path)} TO VERSION AS OF {before_append}")
    assert erase.pending_purge(spark, dv) == erase.Pending(
        erase.version(spark, dv), deletion_vectors=True
    )
    assert erase.pending_purge(spark, cow) == erase.Pending(
        erase.version(spark, cow), deletion_vectors=False
    )
