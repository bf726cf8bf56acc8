"""STRM's own outputs: one CSV file in STRM's layout (every value quoted, `strmMeta.*` columns,
input order), for `run-strm`'s encrypted, decrypted and `keys.csv` files. Registered as the
`strm-csv` sink of the storage layer when this package loads."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark.errors import UnsupportedError
from strm_spark.storage import sinks
from strm_spark.storage.outputs import local_path


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
                F.concat(F.lit("["), F.array_join(meta["consentLevels"], ","), F.lit("]")).alias(
                    "strmMeta.consentLevels"
                ),
            ]
        else:
            value = F.col(f"`{field.name}`")
            if not isinstance(field.dataType, T.StringType):
                value = (
                    F.to_json(value)
                    if isinstance(field.dataType, (T.StructType, T.ArrayType))
                    else value.cast("string")
                )
            cols.append(F.coalesce(value, F.lit("")).alias(field.name))
    return df.select(*cols, *[F.col(f"`{k}`") for k in keep])


def _quoted(value: Column) -> Column:
    """A CSV field quoted the way STRM wrote every value: "…" with inner quotes doubled."""
    return F.concat(F.lit('"'), F.regexp_replace(value, '"', '""'), F.lit('"'))


def write_strm_csv(df: DataFrame, path: str, charset: str, order_by: Sequence[str]) -> None:
    """One CSV file at exactly `path` (not a folder of part files), rows in `order_by` order
    (input order), a header row, every value quoted and null billingIds empty, as STRM wrote."""
    spark = df.sparkSession
    _require_local(path)  # before anything is written
    layout = df if "strmMeta" not in df.columns else strm_csv_layout(df, order_by)
    data = [c for c in layout.columns if c not in order_by]
    tmp = f"{path}.strm-spark-tmp"
    if charset.upper().replace("_", "-") in ("UTF-8", "UTF8", "US-ASCII", "ASCII"):
        # Lines built here: Spark's CSV writer cannot quote every value but leave nulls bare.
        fields = [
            F.when(F.col(f"`{c}`").isNull(), F.lit("")).otherwise(_quoted(F.col(f"`{c}`")))
            for c in data
        ]
        lines = layout.select(F.concat_ws(",", *fields).alias("value"), *order_by)
        header = spark.createDataFrame([(",".join(f'"{c}"' for c in data),)], "value string")
        for key in order_by:
            kind = lines.schema[key].dataType
            header = header.withColumn(
                key, F.lit(-1 if not isinstance(kind, T.StringType) else "").cast(kind)
            )
        (
            header.unionByName(lines)
            .repartition(1)
            .sortWithinPartitions(*order_by)
            .select("value")
            .write.mode("overwrite")
            .option("lineSep", "\n")
            .text(tmp)
        )
    else:
        (
            layout.repartition(1)
            .sortWithinPartitions(*order_by)
            .drop(*order_by)
            .write.mode("overwrite")
            .format("csv")
            .option("header", "true")
            .option("quoteAll", "true")
            .option("escape", '"')
            .option("ignoreLeadingWhiteSpace", "false")
            .option("ignoreTrailingWhiteSpace", "false")
            .option("encoding", charset)
            .option("lineSep", "\n")
            .save(tmp)
        )
    _move_single_part(tmp, path)


_LOCAL_ONLY = (
    "a one-file CSV output (STRM's layout) needs a path this process sees as a file (a local "
    "path; on Databricks /Volumes/...): Spark writes folders of part files, and moving one "
    "file out of one is no Spark operation"
)


def _require_local(target: str) -> Path:
    dest = local_path(target)
    if dest is None:
        raise UnsupportedError(f"{target}: not a local path; " + _LOCAL_ONLY)
    return dest


def _move_single_part(folder: str, target: str) -> None:
    """Replace `target` by the one part file Spark wrote into `folder`, then drop the folder.
    A file move: Spark's writers only write folders, and its public API moves no file. So the
    folder must be on a file system this process sees (a local path; on Databricks a
    `/Volumes/...` or `/dbfs/...` path)."""
    dest, local = _require_local(target), local_path(folder)
    if local is None or not local.is_dir():
        raise UnsupportedError(
            f"{target}: Spark wrote its folder where this process cannot see it (a "
            "Spark Connect server on another machine?); " + _LOCAL_ONLY
        )
    parts = [p for p in local.iterdir() if p.name.startswith("part-")]
    if len(parts) != 1:
        raise UnsupportedError(f"{target}: expected one part file in {folder}, found {len(parts)}")
    os.replace(parts[0], dest)
    shutil.rmtree(local)
    # The local file system keeps a checksum file beside the data; it is not part of the output.
    (dest.parent / f".{dest.name}.crc").unlink(missing_ok=True)


sinks.register("strm-csv", write_strm_csv)
