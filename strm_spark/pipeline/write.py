"""Stage 6, write: the output tables (Delta by default, Parquet, CSV, or STRM's one-file CSV)
and the data subjects MERGE. Tables are not partitioned unless the config asks: rows are written
sorted by `strmDay`, whose min/max statistics let Delta skip files by day."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from strm_spark.config.model import DerivedConfig, JobConfig, OutputConfig
from strm_spark.delta.outputs import write_strm_csv, write_table
from strm_spark.delta.tables import create_table, merge
from strm_spark.pipeline.columns import ORDER_COLUMNS

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
    """Columns of the encrypted and derived tables that keep min/max statistics: no PII."""
    contract = config.contract
    cols = [n for n in contract.field_names if n not in contract.sensitive_columns]
    return cols + ["strmMeta.eventContractRef", "strmMeta.timestamp", "strmMeta.keyLink", "strmDay"]


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
    """One data output: rows sorted by day within each file, in the output's format and layout
    (`partition_by` / `cluster_by` from the config; an existing table keeps its own)."""
    if out.format == "strm-csv":
        write_strm_csv(rows, out.path, out.charset, ORDER_COLUMNS)
        return
    if not out.partition_by:
        rows = rows.sortWithinPartitions("strmDay")
    stats = [c for c in stats if c not in out.partition_by]  # Delta keeps partition values apart
    write_table(
        rows,
        out.path,
        out.format,
        mode,
        out.partition_by,
        stats,
        txn,
        out.cluster_by,
        config.csv_formula_guard,
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
    if any_rejected or mode != "append" or config.rejected.format != "delta":
        write_table(
            rejected,
            config.rejected.path,
            config.rejected.format,
            mode,
            (),
            stats,
            txn,
            formula_guard=config.csv_formula_guard,
        )
    else:  # nothing to append: the table only has to exist (one commit saved per run)
        create_table(spark, config.rejected.path, rejected.schema, (), stats)


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
