"""The key store: one Tink keyset per (group, key-field value, UTC day), kept apart from data.

Layout under the configured location (both Delta tables):
- `keys`: keyLink, keyset (BINARY Tink JSON), groupId, keyHash (HMAC of the key-field value,
  never the value), day, kind ('row' or 'quarantine'), expiresAt, createdAt, runId.
- `hash_keys`: one random HMAC secret per group, used for keyHash.
New keys are committed here (MERGE, insert-only) before any data that uses them is written.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from . import crypto
from .errors import KeyStoreError
from .tables import create_delta_table

KEYS_SCHEMA = T.StructType([
    T.StructField("keyLink", T.StringType(), False),
    T.StructField("keyset", T.BinaryType(), False),
    T.StructField("groupId", T.StringType(), False),
    T.StructField("keyHash", T.StringType(), True),
    T.StructField("day", T.DateType(), True),
    T.StructField("kind", T.StringType(), False),
    T.StructField("expiresAt", T.TimestampType(), False),
    T.StructField("createdAt", T.TimestampType(), False),
    T.StructField("runId", T.StringType(), False),
])

HASH_KEYS_SCHEMA = T.StructType([
    T.StructField("groupId", T.StringType(), False),
    T.StructField("hashKey", T.BinaryType(), False),
    T.StructField("createdAt", T.TimestampType(), False),
])

# Statistics only on non-secret columns; keysets are BINARY, which Delta never indexes.
_KEYS_STATS = "keyLink,groupId,keyHash,day,kind,expiresAt,createdAt"

_NEW_KEY_SCHEMA = T.StructType([
    T.StructField("keyHash", T.StringType(), True),
    T.StructField("day", T.DateType(), True),
    T.StructField("keyLink", T.StringType(), False),
    T.StructField("keyset", T.BinaryType(), False),
])


def _generate_keys(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for pdf in batches:
        n = len(pdf)
        yield pd.DataFrame({
            "keyHash": pdf["keyHash"],
            "day": pdf["day"],
            "keyLink": [str(uuid.uuid4()) for _ in range(n)],
            "keyset": [crypto.new_keyset() for _ in range(n)],
        })


def expires_at(day: F.Column, retention_days: int) -> F.Column:
    """00:00Z of the day after `day`, plus the retention period (time-zone independent)."""
    return F.timestamp_seconds((F.unix_date(day) + F.lit(1 + retention_days)).cast("long") * F.lit(86_400))


@dataclass
class KeyStore:
    spark: SparkSession
    location: str

    @property
    def keys_path(self) -> str:
        return f"{self.location}/keys"

    @property
    def hash_keys_path(self) -> str:
        return f"{self.location}/hash_keys"

    def ensure(self) -> None:
        create_delta_table(self.spark, self.keys_path, KEYS_SCHEMA, stats_columns=_KEYS_STATS)
        create_delta_table(self.spark, self.hash_keys_path, HASH_KEYS_SCHEMA, stats_columns="groupId,createdAt")

    def keys(self, group_id: str | None = None) -> DataFrame:
        df = self.spark.read.format("delta").load(self.keys_path)
        return df if group_id is None else df.where(F.col("groupId") == F.lit(group_id))

    def hash_key(self, group_id: str) -> bytes:
        """The group's HMAC secret for key-field values; created on first use."""
        found = self._read_hash_key(group_id)
        if found is not None:
            return found
        table = DeltaTable.forPath(self.spark, self.hash_keys_path)
        candidate = self.spark.createDataFrame(
            [(group_id, bytearray(secrets.token_bytes(32)))], "groupId string, hashKey binary"
        ).withColumn("createdAt", F.current_timestamp())
        (table.alias("t").merge(candidate.alias("s"), "t.groupId = s.groupId")
         .whenNotMatchedInsertAll().execute())
        found = self._read_hash_key(group_id)
        if found is None:
            raise KeyStoreError(f"key store {self.location}: no hash key for group {group_id!r}")
        return found

    def _read_hash_key(self, group_id: str) -> bytes | None:
        rows = (self.spark.read.format("delta").load(self.hash_keys_path)
                .where(F.col("groupId") == F.lit(group_id)).orderBy("createdAt").limit(1).collect())
        return bytes(rows[0]["hashKey"]) if rows else None

    def create_missing(self, group_id: str, pairs: DataFrame, retention_days: int, run_id: str) -> int:
        """Create keys for the (keyHash, day) pairs the store lacks; returns how many were added.

        `day` may be null for a quarantine pair (rows whose day is unknown)."""
        existing = self.keys(group_id).select("keyHash", "day")
        missing = pairs.join(
            existing,
            (pairs["keyHash"] == existing["keyHash"]) & pairs["day"].eqNullSafe(existing["day"]),
            "left_anti",
        )
        missing = missing.persist()
        try:
            if missing.isEmpty():
                return 0
            return self._insert_new_keys(group_id, missing, retention_days, run_id)
        finally:
            missing.unpersist()

    def _insert_new_keys(self, group_id: str, missing: DataFrame, retention_days: int, run_id: str) -> int:
        new = (missing.mapInPandas(_generate_keys, _NEW_KEY_SCHEMA)
               .withColumn("groupId", F.lit(group_id))
               .withColumn("kind", F.when(F.col("day").isNull(), "quarantine").otherwise("row"))
               .withColumn("expiresAt", expires_at(F.coalesce(F.col("day"), F.current_date()), retention_days))
               .withColumn("createdAt", F.current_timestamp())
               .withColumn("runId", F.lit(run_id))
               .select(*KEYS_SCHEMA.fieldNames()))
        before = DeltaTable.forPath(self.spark, self.keys_path).history(1).select("version").first()[0]
        (DeltaTable.forPath(self.spark, self.keys_path).alias("t")
         .merge(new.alias("s"), "t.groupId = s.groupId AND t.keyHash = s.keyHash AND t.day <=> s.day")
         .whenNotMatchedInsertAll().execute())
        last = DeltaTable.forPath(self.spark, self.keys_path).history(1).first()
        if last["version"] == before:
            return 0
        metrics = last["operationMetrics"] or {}
        return int(metrics.get("numTargetRowsInserted", 0))

    def lookup(self, group_id: str, pairs: DataFrame, day_col: str = "day") -> DataFrame:
        """`pairs` (with keyHash and a day column) plus __keyLink, __keyset, __expiresAt."""
        keys = self.keys(group_id).select(
            F.col("keyHash").alias("__k_hash"), F.col("day").alias("__k_day"),
            F.col("keyLink").alias("__keyLink"), F.col("keyset").alias("__keyset"),
            F.col("expiresAt").alias("__expiresAt"))
        cond = (pairs["keyHash"] == keys["__k_hash"]) & pairs[day_col].eqNullSafe(keys["__k_day"])
        return pairs.join(keys, cond, "inner").drop("__k_hash", "__k_day")

    def keys_export(self, used: DataFrame) -> DataFrame:
        """STRM's keys.csv rows (keyLink, encryptionKey, policyId, expiresAt) for the key links
        in `used` (a `__keyLink` column plus ordering columns: first use decides the order)."""
        order = [c for c in used.columns if c != "__keyLink"]
        first = used.groupBy("__keyLink").agg(F.min(F.struct(*order)).alias("__first"))
        keys = self.spark.read.format("delta").load(self.keys_path)
        utc = F.to_utc_timestamp(F.col("expiresAt"), F.current_timezone())
        return (first.join(keys, first["__keyLink"] == keys["keyLink"])
                .select(F.col("keyLink"), F.col("keyset").cast("string").alias("encryptionKey"),
                        F.lit(None).cast("string").alias("policyId"),
                        F.date_format(utc, "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("expiresAt"),
                        *[F.col(f"__first.{c}").alias(c) for c in order]))
