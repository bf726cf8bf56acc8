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

from strm_spark.delta.tables import is_delta, merge, retry_on_conflict, sql_path
from strm_spark.session import scoped_conf

T = TypeVar("T")

_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
_VACUUM_LOGGING = "spark.databricks.delta.vacuum.logging.enabled"
_LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


__all__ = [
    "PurgeCounts",
    "delete_where",
    "in_parallel",
    "is_delta",
    "merge_delete",
    "needs_purge",
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


def purge(spark: SparkSession, paths: list[str]) -> dict[str, PurgeCounts]:
    """Physically remove what earlier deletes left behind, in each table of `paths`
    (concurrently: they are independent): rewrite files carrying deletion vectors, then VACUUM
    with zero retention. Older versions of these tables become unreadable; do not run this
    while a job writes to the same tables."""
    # VACUUM ... RETAIN 0 HOURS needs the retention check off, and it lists a table's folders
    # with `_LISTING_PARALLELISM` tasks (default 10,000: minutes of task overhead on a small
    # cluster for a table of a few hundred folders). Neither has a per-statement form.
    listing = str(max(4, 2 * int(spark.conf.get("spark.sql.shuffle.partitions", "8"))))
    settings = {_RETENTION_CHECK: "false", _VACUUM_LOGGING: "true", _LISTING_PARALLELISM: listing}
    with scoped_conf(spark, settings):
        results = in_parallel([lambda p=p: _purge_one(spark, p) for p in paths])
    return dict(zip(paths, results))


def _purge_one(spark: SparkSession, path: str) -> PurgeCounts:
    before = version(spark, path)
    features = (
        spark.sql(f"DESCRIBE DETAIL {sql_path(path)}").select("tableFeatures").first()[0] or []
    )
    if "deletionVectors" in features:
        spark.sql(f"REORG TABLE {sql_path(path)} APPLY (PURGE)")
    spark.sql(f"VACUUM {sql_path(path)} RETAIN 0 HOURS")
    # One read of the commits since `before` gives both counts (REORG's and VACUUM's).
    done = _history(spark, path, since=before)
    return PurgeCounts(
        files_rewritten=_metric_since(done, {"REORG", "OPTIMIZE"}, "numRemovedFiles"),
        files_removed=_metric_since(done, {"VACUUM END"}, "numDeletedFiles"),
    )


# Metrics through which a commit says it removed files or marked rows deleted.
_REMOVALS = (
    "numRemovedFiles",
    "numTargetFilesRemoved",
    "numDeletionVectorsAdded",
    "numDeletionVectorsUpdated",
    "numTargetDeletionVectorsAdded",
    "numTargetDeletionVectorsUpdated",
)
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


def needs_purge(spark: SparkSession, path: str) -> bool:
    """Whether a table may hold files that a delete left behind: some commit since its last
    completed VACUUM removed files or added deletion vectors (a delete, an overwrite, a crashed
    erasure). Read from the table's history only; unknown operations count as removals."""
    rows = sorted(_history(spark, path), key=lambda r: r["version"], reverse=True)
    for r in rows:
        op, metrics = r["operation"], r["operationMetrics"] or {}
        if op == "VACUUM END":
            return False
        if op in _NO_FILES:
            continue
        if op not in _APPENDS or (r["operationParameters"] or {}).get("mode") == "Overwrite":
            return True
        if any(int(metrics.get(m, 0) or 0) > 0 for m in _REMOVALS):
            return True
    # Reached the oldest commit still in the log: safe only if that is the table's creation.
    return not rows or rows[-1]["version"] != 0


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
