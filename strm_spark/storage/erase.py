"""Delta operations for erasure: deletes that keep values out of the log, and physical purge.

Deletes are MERGEs against a small source DataFrame, never `DELETE WHERE x IN (<values>)`:
Delta writes a DELETE's predicate, literals included, into `_delta_log`, which VACUUM never
cleans. Purging rewrites files that carry deletion vectors (`REORG ... APPLY (PURGE)`) and then
VACUUMs with zero retention, so the files that held deleted rows are gone.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from pyspark.sql import DataFrame, Row, SparkSession

from strm_spark.session import scoped_conf
from strm_spark.storage.tables import is_delta, merge, retry_on_conflict, sql_path

T = TypeVar("T")

_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
_VACUUM_LOGGING = "spark.databricks.delta.vacuum.logging.enabled"
_LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


__all__ = [
    "Pending",
    "PurgeCounts",
    "delete_where",
    "in_parallel",
    "is_delta",
    "merge_delete",
    "pending_purge",
    "purge",
    "version",
]


def _history(
    spark: SparkSession, path: str, limit: int | None = None, since: int | None = None
) -> list[Row]:
    """The table's commits (`DESCRIBE HISTORY`), the newest `limit`, or those after `since`."""
    statement = f"DESCRIBE HISTORY {sql_path(path)}" + (f" LIMIT {int(limit)}" if limit else "")
    history = spark.sql(statement).select(
        "version", "operation", "operationParameters", "operationMetrics"
    )
    return (history if since is None else history.where(f"version > {int(since)}")).collect()


def version(spark: SparkSession, path: str) -> int:
    return int(_history(spark, path, 1)[0]["version"])


def _metric_since(rows: list[Row], operations: set[str], metric: str) -> int:
    """The sum of `metric` over the commits of `rows` (history rows) of these operations."""
    return sum(
        int((r["operationMetrics"] or {}).get(metric, 0))
        for r in rows
        if r["operation"] in operations
    )


def merge_delete(spark: SparkSession, path: str, source: DataFrame, condition: str) -> int:
    """Delete the target rows matching a row of `source` (aliases `t` and `s` in `condition`);
    returns how many rows were deleted. No commit when nothing matches."""
    metrics = merge(source, path, condition, "WHEN MATCHED THEN DELETE", f"delete from {path}")
    return int(metrics["num_deleted_rows"]) if metrics is not None else 0


def delete_where(spark: SparkSession, path: str, condition: str) -> int:
    """Delete rows matching a SQL predicate that holds no personal data (e.g. a group id and a
    cut-off time): Delta keeps it in `commitInfo`."""
    row = retry_on_conflict(
        lambda: spark.sql(f"DELETE FROM {sql_path(path)} WHERE {condition}").first(),
        f"delete from {path}",
    )
    return int(row["num_affected_rows"] or 0) if row is not None else 0


@dataclass
class PurgeCounts:
    files_rewritten: int = 0
    files_removed: int = 0


@dataclass(frozen=True)
class Pending:
    """What a table has to purge, read from its history: its version when read, and whether
    some commit since its last VACUUM may have left deletion vectors (then `REORG ... APPLY
    (PURGE)` rewrites the files they mark before the VACUUM)."""

    version: int
    deletion_vectors: bool


def purge(spark: SparkSession, tables: dict[str, Pending]) -> dict[str, PurgeCounts]:
    """Physically remove what earlier deletes left behind, in each table of `tables` (path ->
    what `pending_purge` found; concurrently: they are independent): rewrite files carrying
    deletion vectors, then VACUUM with zero retention. Older versions of these tables become
    unreadable; do not run this while a job writes to the same tables."""
    # VACUUM ... RETAIN 0 HOURS needs the retention check off, and it lists a table's folders
    # with `_LISTING_PARALLELISM` tasks (default 10,000: minutes of task overhead on a small
    # cluster for a table of a few hundred folders). Neither has a per-statement form.
    listing = str(max(4, 2 * int(spark.conf.get("spark.sql.shuffle.partitions", "8"))))
    settings = {_RETENTION_CHECK: "false", _VACUUM_LOGGING: "true", _LISTING_PARALLELISM: listing}
    with scoped_conf(spark, settings):
        results = in_parallel([lambda p=p, t=t: _purge_one(spark, p, t) for p, t in tables.items()])
    return dict(zip(tables, results))


def _purge_one(spark: SparkSession, path: str, pending: Pending) -> PurgeCounts:
    if pending.deletion_vectors:
        spark.sql(f"REORG TABLE {sql_path(path)} APPLY (PURGE)")
    spark.sql(f"VACUUM {sql_path(path)} RETAIN 0 HOURS")
    # One read of the commits since the pending version gives both counts (REORG's, VACUUM's).
    done = _history(spark, path, since=pending.version)
    return PurgeCounts(
        files_rewritten=_metric_since(done, {"REORG", "OPTIMIZE"}, "numRemovedFiles"),
        files_removed=_metric_since(done, {"VACUUM END"}, "numDeletedFiles"),
    )


# Metrics through which a commit says it marked rows deleted with deletion vectors.
_DELETION_VECTORS = (
    "numDeletionVectorsAdded",
    "numDeletionVectorsUpdated",
    "numTargetDeletionVectorsAdded",
    "numTargetDeletionVectorsUpdated",
)
# Metrics through which a commit says it removed files or marked rows deleted.
_REMOVALS = ("numRemovedFiles", "numTargetFilesRemoved", *_DELETION_VECTORS)
# Operations that add no data file and remove none.
_NO_FILES = {
    "CREATE TABLE",
    "SET TBLPROPERTIES",
    "UNSET TBLPROPERTIES",
    "ADD COLUMNS",
    "CHANGE COLUMN",
    "UPGRADE PROTOCOL",
    "VACUUM START",
}
_APPENDS = {"WRITE", "MERGE", "STREAMING UPDATE"}
# Operations whose metrics say whether they added deletion vectors; REORG and OPTIMIZE remove them.
_DV_METERED = _APPENDS | {"DELETE", "UPDATE", "REORG", "OPTIMIZE"}


def pending_purge(spark: SparkSession, path: str) -> Pending | None:
    """Whether a table may hold files that a delete left behind (None if not): some commit
    since its last completed VACUUM removed files or added deletion vectors (a delete, an
    overwrite, a crashed erasure). Read from the table's history in one read; unknown
    operations count as removals, and as leaving deletion vectors when the table has them on."""
    rows = sorted(_history(spark, path), key=lambda r: r["version"], reverse=True)
    since: list[Row] = []
    for r in rows:
        if r["operation"] == "VACUUM END":
            break
        since.append(r)
    # Without a VACUUM END, the oldest commit still in the log must be the table's creation.
    complete = len(since) < len(rows) or (bool(rows) and rows[-1]["version"] == 0)
    if complete and not any(_removes(r) for r in since):
        return None
    metered = complete and all(r["operation"] in _DV_METERED | _NO_FILES for r in since)
    dvs = any(_metric(r, _DELETION_VECTORS) for r in since) or (
        not metered and "deletionVectors" in _features(spark, path)
    )
    return Pending(int(rows[0]["version"]) if rows else -1, dvs)


def _metric(row: Row, names: tuple[str, ...]) -> bool:
    metrics = row["operationMetrics"] or {}
    return any(int(metrics.get(m, 0) or 0) > 0 for m in names)


def _removes(row: Row) -> bool:
    op = row["operation"]
    if op in _NO_FILES:
        return False
    if op not in _APPENDS or (row["operationParameters"] or {}).get("mode") == "Overwrite":
        return True
    return _metric(row, _REMOVALS)


def _features(spark: SparkSession, path: str) -> list[str]:
    return spark.sql(f"DESCRIBE DETAIL {sql_path(path)}").select("tableFeatures").first()[0] or []


def in_parallel(tasks: list[Callable[[], T]], max_workers: int = 4) -> list[T]:
    """Run independent Spark actions from driver threads (Spark schedules them side by side);
    results in task order, the first failure re-raised."""
    if len(tasks) <= 1:
        return [t() for t in tasks]
    with ThreadPoolExecutor(
        max_workers=min(max_workers, len(tasks)), thread_name_prefix="strm-erase"
    ) as pool:
        futures = [pool.submit(t) for t in tasks]
        return [f.result() for f in futures]
