"""Delta tables through SQL and DataFrame writers: nothing here needs a JVM gateway, so it runs
on a classic session and over Spark Connect alike."""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import types as T

log = logging.getLogger("strm_spark")
R = TypeVar("R")

# Delta's optimistic-concurrency errors: another writer committed first.
_CONFLICTS = (
    "Concurrent",
    "MetadataChanged",
    "ProtocolChanged",
    "DELTA_CONCURRENT",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
    "TableAlreadyExists",
    "DELTA_TABLE_ALREADY_EXISTS",
)
# What Delta says while another process is between making a table's log folder and committing.
_CREATING_ELSEWHERE = (
    "NON_EMPTY_LOCATION",
    "DELTA_TABLE_NOT_FOUND",
    "DELTA_MISSING_DELTA_TABLE",
    "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION",
)
_CREATE_ATTEMPTS = 10


def sql_path(path: str) -> str:
    """`delta.`<path>`` for SQL, backticks in the path escaped."""
    return "delta.`" + path.replace("`", "``") + "`"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _sql_type(kind: T.DataType) -> str:
    if isinstance(kind, T.StructType):
        return (
            "STRUCT<"
            + ", ".join(f"{_quote(f.name)}: {_sql_type(f.dataType)}" for f in kind.fields)
            + ">"
        )
    if isinstance(kind, T.ArrayType):
        return f"ARRAY<{_sql_type(kind.elementType)}>"
    if isinstance(kind, T.MapType):
        return f"MAP<{_sql_type(kind.keyType)}, {_sql_type(kind.valueType)}>"
    return kind.simpleString().upper()


def columns_ddl(schema: T.StructType) -> str:
    """A schema as the column list of CREATE TABLE (top-level nullability kept)."""
    return ", ".join(
        f"{_quote(f.name)} {_sql_type(f.dataType)}{'' if f.nullable else ' NOT NULL'}"
        for f in schema.fields
    )


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def delta_properties(stats_columns: Sequence[str] | str | None) -> dict[str, str]:
    """Table properties that keep plaintext out of `_delta_log` statistics.

    Delta writes min/max values of indexed columns into the log, which VACUUM never
    removes; only the listed columns get statistics (none if the list is empty)."""
    props = {"delta.enableChangeDataFeed": "false"}
    if stats_columns is None:
        return props
    cols = (
        stats_columns
        if isinstance(stats_columns, str)
        else ",".join(f"`{c}`" if "." not in c else c for c in stats_columns)
    )
    if cols:
        props["delta.dataSkippingStatsColumns"] = cols
    else:
        props["delta.dataSkippingNumIndexedCols"] = "0"
    return props


def is_conflict(exc: BaseException) -> bool:
    condition = getattr(exc, "getCondition", lambda: None)()
    text = f"{type(exc).__name__} {condition or ''} {str(exc)[:300]}"
    return any(marker in text for marker in _CONFLICTS)


def retry_on_conflict(action: Callable[[], R], what: str, attempts: int = 10) -> R:
    """Run a Delta commit, again when a concurrent writer committed first: `action` must
    re-read the table (a MERGE does), so the retry sees the winner's rows."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts - 1 or not is_conflict(exc):
                raise
            log.info(
                "%s: a concurrent commit won; retrying (%d/%d)", what, attempt + 1, attempts - 1
            )
            time.sleep(random.uniform(0.1, 0.3) * (attempt + 1))
    raise AssertionError("unreachable")


def is_delta(spark: SparkSession, path: str) -> bool:
    """Whether `path` holds a Delta table (a read of its log, no Spark job)."""
    try:
        spark.read.format("delta").load(path).schema  # noqa: B018 - analysis reads the log
    except AnalysisException:
        return False
    except Exception as exc:  # Spark Connect reports analysis errors as its own exception types
        if any(
            m in str(exc)[:400]
            for m in (
                "DELTA_MISSING_DELTA_TABLE",
                "PATH_NOT_FOUND",
                "not a Delta table",
                "DELTA_TABLE_NOT_FOUND",
            )
        ):
            return False
        raise
    return True


def create_table(
    spark: SparkSession,
    path: str,
    schema: T.StructType,
    partition_by: Sequence[str] = (),
    stats_columns: Sequence[str] | str | None = None,
    cluster_by: Sequence[str] = (),
) -> None:
    """Create an empty Delta table at `path` with our properties, if none exists yet; a table
    that exists keeps its layout. Another process may be creating the same table: its log folder
    exists but holds no commit yet, which Delta reports as a non-empty or non-Delta location, so
    this waits for the other commit."""
    props = ", ".join(
        f"{sql_string(k)} = {sql_string(v)}" for k, v in delta_properties(stats_columns).items()
    )
    layout = ""
    if partition_by:
        layout = f" PARTITIONED BY ({', '.join(_quote(c) for c in partition_by)})"
    elif cluster_by:
        layout = f" CLUSTER BY ({', '.join(_quote(c) for c in cluster_by)})"
    statement = (
        f"CREATE TABLE IF NOT EXISTS {sql_path(path)} ({columns_ddl(schema)}) USING delta"
        f"{layout} TBLPROPERTIES ({props})"
    )
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            retry_on_conflict(lambda: spark.sql(statement), f"create {path}")
            # A log folder without a commit (a creator between making it and committing, or one
            # that died there) makes CREATE TABLE IF NOT EXISTS a silent no-op.
            if is_delta(spark, path):
                return
        except Exception as exc:
            if is_delta(spark, path):
                return
            if not any(m in str(exc)[:400] for m in _CREATING_ELSEWHERE):
                raise
        if attempt < _CREATE_ATTEMPTS - 1:
            log.info(
                "create %s: another writer is creating it; waiting (%d/%d)",
                path,
                attempt + 1,
                _CREATE_ATTEMPTS - 1,
            )
            time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(
        f"{path}: a Delta log folder exists but no table appeared in it; another process "
        "may have died while creating it: if no job is running, remove the folder and rerun"
    )


@contextlib.contextmanager
def temp_view(df: DataFrame, prefix: str = "strm_src") -> Iterator[str]:
    """`df` as a session temp view with a unique name, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    df.createOrReplaceTempView(name)
    try:
        yield name
    finally:
        df.sparkSession.catalog.dropTempView(name)


def merge(
    source: DataFrame, path: str, condition: str, clauses: str, what: str | None = None
) -> Row | None:
    """`MERGE INTO delta.`path` t USING <source> s ON condition <clauses>` as SQL over a temp
    view; returns Delta's metrics row (num_inserted_rows, num_deleted_rows, ...), retried when a
    concurrent writer committed first. Keep values of people out of `condition`: Delta writes it
    into `commitInfo`."""
    spark = source.sparkSession
    with temp_view(source) as view:
        statement = f"MERGE INTO {sql_path(path)} t USING {view} s ON {condition} {clauses}"
        return retry_on_conflict(lambda: spark.sql(statement).first(), what or f"merge into {path}")


def write_table(
    df: DataFrame,
    path: str,
    mode: str,
    *,
    partition_by: Sequence[str] = (),
    cluster_by: Sequence[str] = (),
    stats_columns: Sequence[str] | None = None,
    txn: tuple[str, int] | None = None,
    fmt: str = "delta",
) -> None:
    """Write `df` to `path`. A new Delta table is created first, so its properties and layout
    apply; an existing one keeps its own layout, and the write follows it. With `txn` (app id,
    version), Delta skips the write if it already committed that version."""
    if fmt == "delta":
        create_table(df.sparkSession, path, df.schema, partition_by, stats_columns, cluster_by)
        writer = df.write.format("delta").mode(mode)
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
    else:
        writer = df.write.format(fmt).mode(mode)
        if fmt == "csv":
            writer = writer.option("header", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
    writer.save(path)
