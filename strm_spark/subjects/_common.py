"""What the subjects modules share: a job's key store and data subjects table, the key links of
subjects, reads pinned to one table version, and the meta columns of output rows."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark import columns as cols
from strm_spark.config.model import JobConfig
from strm_spark.contract.model import Contract, split_path
from strm_spark.crypto.engines import decrypt_column, with_decrypted_pii
from strm_spark.keys.store import KeyStore
from strm_spark.storage import erase as ops
from strm_spark.storage.outputs import path_exists
from strm_spark.storage.tables import read, read_version


def _subjects_df(spark: SparkSession, subjects: Iterable[str]) -> DataFrame:
    """The requested ids as a tiny DataFrame: joined against, never inlined as literals (a
    literal would show in query plans, logs and the Spark UI)."""
    ids = sorted({s for s in subjects})
    return spark.createDataFrame([(s,) for s in ids], "dataSubject string")


def _data_subjects(
    spark: SparkSession, config: JobConfig, version: int | None = None
) -> DataFrame | None:
    path = config.data_subjects.path
    if not ops.is_delta(spark, path):
        return None
    rows = read(spark, path) if version is None else read_version(spark, path, version)
    return rows.where(F.col("groupId") == F.lit(config.group_id))


def _store(spark: SparkSession, config: JobConfig, need_master: bool = False) -> KeyStore:
    store = KeyStore.for_job(spark, config, with_master=need_master)
    if need_master:
        store.check_master_key()
    return store


def _links_of(
    spark: SparkSession, config: JobConfig, subjects: Sequence[str]
) -> list[tuple[str, str]]:
    """(dataSubject, keyLink) entries of `subjects` in the job's group."""
    ds = _data_subjects(spark, config)
    if ds is None or not subjects:
        return []
    rows = (
        ds.join(F.broadcast(_subjects_df(spark, subjects)), "dataSubject")
        .select("dataSubject", "keyLink")
        .distinct()
        .collect()
    )
    return [(r["dataSubject"], r["keyLink"]) for r in rows]


def _meta(df: DataFrame, name: str) -> Column:
    """`strmMeta.<name>` of a Delta/Parquet table, or the flattened column of a CSV one."""
    flat = f"strmMeta.{name}"
    return F.col(f"`{flat}`") if flat in df.columns else F.col("strmMeta").getField(name)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        v = value if value.tzinfo else value.replace(tzinfo=UTC)
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(type(value).__name__)  # json.dumps(default=...) protocol: not JSON-able


def _exists(spark: SparkSession, path: str, fmt: str) -> bool:
    if fmt == "delta":
        return ops.is_delta(spark, path)
    return path_exists(spark, path)


def _read_pinned(spark: SparkSession, path: str, fmt: str) -> tuple[DataFrame, int | None]:
    """Read a table; a Delta table at a fixed version, named in the manifest."""
    if fmt != "delta":
        return read(spark, path, fmt), None
    v = ops.version(spark, path)
    return read_version(spark, path, v), v


def _decrypted(joined: DataFrame, contract: Contract) -> DataFrame:
    """Every PII field (nested and repeated ones too) and the raw record of a rejected row
    decrypted with the joined cleartext keyset; a cell that does not decrypt fails the query
    without showing it."""
    paths = [p for p in contract.pii_names if _has_path(joined, p)]
    plain = with_decrypted_pii(joined, contract, paths, F.col(cols.KEYSET), strict=True)
    if "rawRecord" in joined.columns:
        plain = plain.withColumn(
            "rawRecord", decrypt_column(F.col("rawRecord"), F.col(cols.KEYSET), strict=True)
        )
    return plain


def _has_path(df: DataFrame, path: str | None) -> bool:
    if not path:
        return False
    dtype: Any = df.schema
    for part in split_path(path):
        if not isinstance(dtype, T.StructType) or part not in dtype.fieldNames():
            return False
        dtype = dtype[part].dataType
    return True


def _month_ranges(days: Sequence[date], alias: str = "t.") -> str:
    """A strmDay condition that covers `days` by whole calendar months, consecutive months as
    one range. Delta keeps a MERGE's condition in `commitInfo`, where it outlives the erasure:
    months are shared by everyone active in them, where the days would be the subject's own,
    and they still let the statistics on strmDay skip the files of other months."""
    months = sorted({(d.year, d.month) for d in days})
    ranges: list[list[tuple[int, int]]] = []
    for year, month in months:
        if ranges and _next_month(*ranges[-1][1]) == (year, month):
            ranges[-1][1] = (year, month)
        else:
            ranges.append([(year, month), (year, month)])
    return " OR ".join(
        f"({alias}strmDay >= DATE'{date(*lo, 1).isoformat()}' AND {alias}strmDay < "
        f"DATE'{date(*_next_month(*hi), 1).isoformat()}')"
        for lo, hi in ranges
    )


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _sql_str(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
