"""Stage 6, write: the output tables (Delta by default, Parquet, CSV, or STRM's one-file CSV)
and the data subjects MERGE. Tables are not partitioned unless the config asks: `strmDay` keeps
min/max statistics, by which Delta skips the files of other days (a file holds one run's days)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from strm_spark.columns import ORDER_COLUMNS
from strm_spark.config.model import DerivedConfig, JobConfig, OutputConfig
from strm_spark.storage.sinks import write
from strm_spark.storage.tables import create_table, is_delta, merge

DATA_SUBJECTS_SCHEMA = T.StructType(
    [
        T.StructField("dataSubject", T.StringType(), False),
        T.StructField("keyLink", T.StringType(), False),
        T.StructField("groupId", T.StringType(), False),
        T.StructField("expiresAt", T.TimestampType(), False),
        T.StructField("createdAt", T.TimestampType(), False),
    ]
)


def stats_columns(config: JobConfig) -> list[str]:
    """Columns of the encrypted and derived tables that keep min/max statistics: the day, which
    every bounded read (a run's, an export's, a forget's) skips files by, and the event time.
    Each statistics column costs write time (docs/performance.md); a contract field gets them
    with `ALTER TABLE ... SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = ...)`."""
    return ["strmMeta.timestamp", "strmDay"]


# The rejected table keeps statistics only on what the job writes: any source field of a bad
# row can hold anything (a shifted row puts an email into a field that is not PII), and
# statistics outlive the row in `_delta_log` and its .crc files, where forget never reaches.
REJECTED_STATS = ("sourceFile", "rowNumber", "runId", "rejectedAt", "strmMeta.keyLink")


def write_output(
    rows: DataFrame,
    out: OutputConfig | DerivedConfig,
    config: JobConfig,
    mode: str,
    txn: tuple[str, int] | None,
    stats: Sequence[str],
) -> None:
    """One data output in its format and layout (`partition_by` / `cluster_by` from the config;
    an existing table keeps its own). Rows are not sorted: each task writes one file, whose
    statistics cover the days of its rows whatever their order (docs/performance.md)."""
    write(
        rows,
        out.path,
        mode,
        fmt=out.format,
        partition_by=out.partition_by,
        cluster_by=out.cluster_by,
        stats_columns=[c for c in stats if c not in out.partition_by],  # partition values apart
        txn=txn,
        formula_guard=config.csv_formula_guard,
        charset=out.charset,
        order_by=ORDER_COLUMNS,
    )


def write_rejected(
    spark: SparkSession,
    rejected: DataFrame,
    config: JobConfig,
    mode: str,
    txn: tuple[str, int] | None,
    any_rejected: bool,
) -> None:
    stats = REJECTED_STATS
    path, fmt = config.rejected.path, config.rejected.format
    if not any_rejected and fmt == "delta" and (mode == "append" or not is_delta(spark, path)):
        # nothing to add, nothing to empty: the table only has to exist (one commit saved)
        create_table(spark, path, rejected.schema, (), stats)
        return
    if not any_rejected:  # an emptied table (or files), without reading the source
        rejected = spark.createDataFrame([], rejected.schema)
    write(
        rejected,
        path,
        mode,
        fmt=fmt,
        stats_columns=stats,
        txn=txn,
        formula_guard=config.csv_formula_guard,
    )


def merge_data_subjects(
    spark: SparkSession,
    links: DataFrame,
    config: JobConfig,
    first: datetime | None,
    last: datetime | None,
) -> int:
    """Add (data subject, key link) entries; idempotent (insert-only MERGE). The target is read
    only where its expiry times can match the batch's keys (`first`..`last`, a range of the
    whole batch, never one subject's): Delta's statistics on expiresAt skip the rest."""
    path = config.data_subjects.path
    create_table(
        spark, path, DATA_SUBJECTS_SCHEMA, stats_columns="keyLink,groupId,expiresAt,createdAt"
    )
    if first is None:
        return 0
    bound = (
        f"t.expiresAt BETWEEN TIMESTAMP'{first.isoformat(sep=' ')}' "
        f"AND TIMESTAMP'{last.isoformat(sep=' ')}'"
    )
    metrics = merge(
        links,
        path,
        f"{bound} AND t.dataSubject = s.dataSubject AND t.keyLink = s.keyLink",
        "WHEN NOT MATCHED THEN INSERT *",
        f"data subjects {path}",
    )
    return int(metrics["num_inserted_rows"] or 0) if metrics is not None else 0
