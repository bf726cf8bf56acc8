"""Writing output tables: Delta (default), Parquet or CSV, with privacy-safe Delta settings."""

from __future__ import annotations

from collections.abc import Sequence

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T


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
    builder.execute()


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
) -> None:
    """Write `df` to `path`; Delta tables are created first so their properties apply."""
    if fmt == "delta":
        create_delta_table(df.sparkSession, path, df.schema, partition_by, stats_columns)
        writer = df.write.format("delta").mode(mode)
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
