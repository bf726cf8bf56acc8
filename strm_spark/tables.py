"""Writing output tables: Delta (default), Parquet or CSV, with privacy-safe Delta settings."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T


log = logging.getLogger("strm_spark")
R = TypeVar("R")

# Delta's optimistic-concurrency errors: another writer committed first.
_CONFLICTS = ("Concurrent", "MetadataChanged", "ProtocolChanged", "DELTA_CONCURRENT", "DELTA_METADATA_CHANGED",
              "DELTA_PROTOCOL_CHANGED", "TableAlreadyExists", "DELTA_TABLE_ALREADY_EXISTS")


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
            log.info("%s: a concurrent commit won; retrying (%d/%d)", what, attempt + 1, attempts - 1)
            time.sleep(random.uniform(0.1, 0.3) * (attempt + 1))
    raise AssertionError("unreachable")


def delta_properties(stats_columns: Sequence[str] | str | None) -> dict[str, str]:
    """Table properties that keep plaintext out of `_delta_log` statistics.

    Delta writes min/max values of indexed columns into the log, which VACUUM never
    removes; only the listed columns get statistics (none if the list is empty)."""
    props = {"delta.enableChangeDataFeed": "false"}
    if stats_columns is None:
        return props
    cols = stats_columns if isinstance(stats_columns, str) else ",".join(f"`{c}`" if "." not in c else c for c in stats_columns)
    if cols:
        props["delta.dataSkippingStatsColumns"] = cols
    else:
        props["delta.dataSkippingNumIndexedCols"] = "0"
    return props


def create_delta_table(
    spark: SparkSession,
    path: str,
    schema: T.StructType,
    partition_by: Sequence[str] = (),
    stats_columns: Sequence[str] | str | None = None,
) -> None:
    """Create an empty Delta table at `path` with our properties, if none exists yet."""
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    for key, value in delta_properties(stats_columns).items():
        builder = builder.property(key, value)
    # Another process may be creating the same table: its `_delta_log` folder exists but holds
    # no commit yet. Delta then reports a non-empty, non-Delta location, or no table at all
    # (as a check right after the create may too), so wait for the other commit.
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            retry_on_conflict(builder.execute, f"create {path}")
            if DeltaTable.isDeltaTable(spark, path):
                return
        except Exception as exc:
            creating_elsewhere = any(m in str(exc)[:300] for m in _CREATING_ELSEWHERE)
            if not creating_elsewhere or not path_exists(spark, f"{path.rstrip('/')}/_delta_log"):
                raise
        if attempt == _CREATE_ATTEMPTS - 1:
            break
        log.info("create %s: another writer is creating it; waiting (%d/%d)", path, attempt + 1,
                 _CREATE_ATTEMPTS - 1)
        time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"{path}: a Delta log folder exists but no table appeared in it; another process "
                       "may have died while creating it: if no job is running, remove the folder and rerun")


_CREATE_ATTEMPTS = 10
_CREATING_ELSEWHERE = ("NON_EMPTY_LOCATION", "DELTA_TABLE_NOT_FOUND")


def path_exists(spark: SparkSession, uri: str) -> bool:
    """Whether a file or folder exists, through Hadoop's FileSystem (so cloud URIs work too)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return bool(path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(path))


def flatten_for_csv(df: DataFrame) -> DataFrame:
    """CSV holds no structs or arrays: `strmMeta.x` columns, arrays as JSON text like `[2]`."""
    cols = []
    for field in df.schema.fields:
        if isinstance(field.dataType, T.StructType):
            for sub in field.dataType.fields:
                c = F.col(f"`{field.name}`.`{sub.name}`")
                if isinstance(sub.dataType, (T.ArrayType, T.MapType, T.StructType)):
                    c = F.to_json(c)
                cols.append(c.alias(f"{field.name}.{sub.name}"))
        elif isinstance(field.dataType, (T.ArrayType, T.MapType)):
            cols.append(F.to_json(F.col(f"`{field.name}`")).alias(field.name))
        elif isinstance(field.dataType, T.BinaryType):
            cols.append(F.base64(F.col(f"`{field.name}`")).alias(field.name))
        else:
            cols.append(F.col(f"`{field.name}`"))
    return df.select(*cols)


def write_table(
    df: DataFrame,
    path: str,
    fmt: str,
    mode: str,
    partition_by: Sequence[str] = (),
    stats_columns: Sequence[str] | None = None,
    txn: tuple[str, int] | None = None,
) -> None:
    """Write `df` to `path`; Delta tables are created first so their properties apply. With
    `txn` (app id, version), Delta skips the write if it already committed that version."""
    if fmt == "delta":
        create_delta_table(df.sparkSession, path, df.schema, partition_by, stats_columns)
        writer = df.write.format("delta").mode(mode)
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
    elif fmt == "parquet":
        writer = df.write.format("parquet").mode(mode)
    elif fmt == "csv":
        writer = flatten_for_csv(df).write.format("csv").mode(mode).option("header", "true")
    else:  # pragma: no cover - config validation rejects other formats
        raise ValueError(f"unknown output format {fmt}")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)


def read_table(spark: SparkSession, path: str, fmt: str = "delta") -> DataFrame:
    reader = spark.read.format(fmt)
    if fmt == "csv":
        reader = reader.option("header", "true")
    return reader.load(path)


def strm_csv_layout(df: DataFrame, keep: Sequence[str] = ()) -> DataFrame:
    """STRM's CSV columns: the fields as text ("" for null), then the strmMeta columns
    (`[2]`-style consent levels, empty billingId)."""
    cols = []
    for field in df.schema.fields:
        if field.name in keep or field.name == "strmDay":
            continue
        if field.name == "strmMeta":
            meta = F.col("strmMeta")
            cols += [
                meta["eventContractRef"].alias("strmMeta.eventContractRef"),
                meta["nonce"].cast("string").alias("strmMeta.nonce"),
                meta["timestamp"].cast("string").alias("strmMeta.timestamp"),
                meta["keyLink"].alias("strmMeta.keyLink"),
                meta["billingId"].alias("strmMeta.billingId"),
                F.concat(F.lit("["), F.array_join(meta["consentLevels"], ","), F.lit("]")).alias("strmMeta.consentLevels"),
            ]
        else:
            value = F.col(f"`{field.name}`")
            if not isinstance(field.dataType, T.StringType):
                value = F.to_json(value) if isinstance(field.dataType, (T.StructType, T.ArrayType)) else value.cast("string")
            cols.append(F.coalesce(value, F.lit("")).alias(field.name))
    return df.select(*cols, *[F.col(f"`{k}`") for k in keep])


def _quoted(value: Column) -> Column:
    """A CSV field quoted the way STRM wrote every value: "…" with inner quotes doubled."""
    return F.concat(F.lit('"'), F.regexp_replace(value, '"', '""'), F.lit('"'))


def write_strm_csv(df: DataFrame, path: str, charset: str, order_by: Sequence[str]) -> None:
    """One CSV file at exactly `path` (not a folder of part files), rows in `order_by` order
    (input order), a header row, every value quoted and null billingIds empty, as STRM wrote."""
    spark = df.sparkSession
    layout = df if "strmMeta" not in df.columns else strm_csv_layout(df, order_by)
    data = [c for c in layout.columns if c not in order_by]
    tmp = f"{path}.strm-spark-tmp"
    if charset.upper().replace("_", "-") in ("UTF-8", "UTF8", "US-ASCII", "ASCII"):
        # Lines built here: Spark's CSV writer cannot quote every value but leave nulls bare.
        fields = [F.when(F.col(f"`{c}`").isNull(), F.lit("")).otherwise(_quoted(F.col(f"`{c}`"))) for c in data]
        lines = layout.select(F.concat_ws(",", *fields).alias("value"), *order_by)
        header = spark.createDataFrame([(",".join(f'"{c}"' for c in data),)], "value string")
        for key in order_by:
            kind = lines.schema[key].dataType
            header = header.withColumn(key, F.lit(-1 if not isinstance(kind, T.StringType) else "").cast(kind))
        (header.unionByName(lines).repartition(1).sortWithinPartitions(*order_by).select("value")
         .write.mode("overwrite").option("lineSep", "\n").text(tmp))
    else:
        (layout.repartition(1).sortWithinPartitions(*order_by).drop(*order_by)
         .write.mode("overwrite").format("csv")
         .option("header", "true").option("quoteAll", "true").option("escape", '"')
         .option("ignoreLeadingWhiteSpace", "false").option("ignoreTrailingWhiteSpace", "false")
         .option("encoding", charset).option("lineSep", "\n")
         .save(tmp))
    _move_single_part(spark, tmp, path)


def _move_single_part(spark: SparkSession, folder: str, target: str) -> None:
    """Replace `target` by the one part file Spark wrote into `folder`, then drop the folder."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    Path = jvm.org.apache.hadoop.fs.Path
    folder_path = Path(folder)
    fs = folder_path.getFileSystem(conf)
    parts = [st.getPath() for st in fs.listStatus(folder_path) if st.getPath().getName().startswith("part-")]
    if len(parts) != 1:
        raise RuntimeError(f"expected one part file in {folder}, found {len(parts)}")
    target_path = Path(target)
    fs.delete(target_path, False)
    if not fs.rename(parts[0], target_path):
        raise RuntimeError(f"could not move the output to {target}")
    fs.delete(folder_path, True)
    # The local file system keeps a checksum file beside the data; it is not part of the output.
    crc = Path(target_path.getParent(), f".{target_path.getName()}.crc")
    if fs.exists(crc):
        fs.delete(crc, False)
