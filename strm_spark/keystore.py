"""The key store: one Tink keyset per (group, key-field value, UTC day), kept apart from data.

Layout under the configured location (Delta tables):
- `keys`: keyLink, keyset (BINARY Tink JSON), groupId, keyHash (HMAC of the key-field value,
  never the value), day, kind ('row' or 'quarantine'), expiresAt, createdAt, runId, wrappedBy
  (null: cleartext keyset; else the id of the master key the keyset is encrypted with).
- `hash_keys`: one random HMAC secret per group, used for keyHash.
- `audit_keys`: one random HMAC secret per group, used to name subjects in the audit table.
New keys are committed here (MERGE, insert-only) before any data that uses them is written.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from . import crypto
from .errors import KeyStoreError
from ._delta_ops import inserted_rows, sql_path
from .masterkey import MasterKey, open_keyset, unwrap, wrap
from .tables import create_delta_table, delta_properties, retry_on_conflict

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
    T.StructField("wrappedBy", T.StringType(), True),
])

HASH_KEYS_SCHEMA = T.StructType([
    T.StructField("groupId", T.StringType(), False),
    T.StructField("hashKey", T.BinaryType(), False),
    T.StructField("createdAt", T.TimestampType(), False),
])

# Statistics only on non-secret columns; keysets are BINARY, which Delta never indexes. Not on
# keyHash either: min/max statistics stay in _delta_log after a forget, and a key hash lets whoever
# holds the group's hash key test a guessed key-field value (random HMACs skip no files anyway).
_KEYS_STATS = "keyLink,groupId,day,kind,expiresAt,createdAt,wrappedBy"

_NEW_KEY_SCHEMA = T.StructType([
    T.StructField("keyHash", T.StringType(), True),
    T.StructField("day", T.DateType(), True),
    T.StructField("keyLink", T.StringType(), False),
    T.StructField("keyset", T.BinaryType(), False),
])


def _key_generator(master: MasterKey | None) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A mapInPandas function creating one keyset per row (on the workers), wrapped with the
    master key and its new key link when one is configured."""

    def generate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            n = len(pdf)
            links = [str(uuid.uuid4()) for _ in range(n)]
            keysets = [crypto.new_keyset() for _ in range(n)]
            if master is not None:
                keysets = [wrap(ks, link, master) for ks, link in zip(keysets, links)]
            yield pd.DataFrame({
                "keyHash": pdf["keyHash"],
                "day": pdf["day"],
                "keyLink": links,
                "keyset": keysets,
            })

    return generate


def expires_at(day: F.Column, retention_days: int) -> F.Column:
    """00:00Z of the day after `day`, plus the retention period (time-zone independent)."""
    return F.timestamp_seconds((F.unix_date(day) + F.lit(1 + retention_days)).cast("long") * F.lit(86_400))


@dataclass
class KeyStore:
    """The key store at `location`; with `master`, new keysets are stored encrypted with it and
    stored ones are opened with it."""

    spark: SparkSession
    location: str
    master: MasterKey | None = None

    @property
    def keys_path(self) -> str:
        return f"{self.location}/keys"

    @property
    def hash_keys_path(self) -> str:
        return f"{self.location}/hash_keys"

    @property
    def audit_keys_path(self) -> str:
        return f"{self.location}/audit_keys"

    def exists(self) -> bool:
        return DeltaTable.isDeltaTable(self.spark, self.keys_path)

    def ensure(self) -> None:
        """Create the tables if needed; bring a store made by an earlier version up to date
        (the wrappedBy column, statistics without keyHash)."""
        create_delta_table(self.spark, self.keys_path, KEYS_SCHEMA, stats_columns=_KEYS_STATS)
        create_delta_table(self.spark, self.hash_keys_path, HASH_KEYS_SCHEMA, stats_columns="groupId,createdAt")
        table = DeltaTable.forPath(self.spark, self.keys_path)
        detail = table.detail().select("properties").first()
        props = dict(detail["properties"] or {})
        if "wrappedBy" not in table.toDF().columns:
            self.spark.sql(f"ALTER TABLE {sql_path(self.keys_path)} ADD COLUMNS (wrappedBy STRING)")
        wanted = delta_properties(_KEYS_STATS)["delta.dataSkippingStatsColumns"]
        if props.get("delta.dataSkippingStatsColumns") != wanted:
            self.spark.sql(f"ALTER TABLE {sql_path(self.keys_path)} "
                           f"SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = '{wanted}')")

    def keys(self, group_id: str | None = None) -> DataFrame:
        df = self.spark.read.format("delta").load(self.keys_path)
        if "wrappedBy" not in df.columns:  # a store written before envelope encryption
            df = df.withColumn("wrappedBy", F.lit(None).cast("string"))
        return df if group_id is None else df.where(F.col("groupId") == F.lit(group_id))

    def cleartext_keys(self, group_id: str | None = None) -> DataFrame:
        """`keys()` with each keyset as cleartext Tink JSON: wrapped ones are opened with the
        master key (lazily, on the workers) for the code paths that encrypt or decrypt."""
        df = self.keys(group_id)
        if self.master is None:
            return df
        master = self.master

        @F.pandas_udf("binary")
        def opened(stored: pd.Series, links: pd.Series) -> pd.Series:
            return pd.Series([unwrap(bytes(k), link, master) for k, link in zip(stored, links)], dtype=object)

        return df.withColumn("keyset", F.when(F.col("wrappedBy").isNull(), F.col("keyset"))
                             .otherwise(opened(F.col("keyset"), F.col("keyLink"))))

    def hash_key(self, group_id: str) -> bytes:
        """The group's HMAC secret for key-field values; created on first use."""
        return self._group_secret(self.hash_keys_path, group_id)

    def audit_key(self, group_id: str) -> bytes:
        """The group's HMAC secret naming subjects in audit records; created on first use and
        never deleted, so an auditor can later check whether a given id was forgotten."""
        create_delta_table(self.spark, self.audit_keys_path, HASH_KEYS_SCHEMA, stats_columns="groupId,createdAt")
        return self._group_secret(self.audit_keys_path, group_id)

    def _group_secret(self, path: str, group_id: str) -> bytes:
        found = self._read_secret(path, group_id)
        if found is not None:
            return found
        table = DeltaTable.forPath(self.spark, path)
        candidate = self.spark.createDataFrame(
            [(group_id, bytearray(secrets.token_bytes(32)))], "groupId string, hashKey binary"
        ).withColumn("createdAt", F.current_timestamp())
        # Insert-only, so concurrent first runs of a group agree on one secret.
        retry_on_conflict(lambda: table.alias("t").merge(candidate.alias("s"), "t.groupId = s.groupId")
                          .whenNotMatchedInsertAll().execute(), f"key store {self.location}: group secret")
        found = self._read_secret(path, group_id)
        if found is None:
            raise KeyStoreError(f"key store {self.location}: no secret for group {group_id!r} in {path}")
        return found

    def _read_secret(self, path: str, group_id: str) -> bytes | None:
        rows = (self.spark.read.format("delta").load(path)
                .where(F.col("groupId") == F.lit(group_id)).orderBy("createdAt").limit(1).collect())
        return bytes(rows[0]["hashKey"]) if rows else None

    def check_master_key(self) -> int:
        """Check, before anything is written, that the configured master key (or its absence)
        fits the keysets in the store; returns how many keysets are stored in cleartext.

        Raises KeyStoreError when wrapped keysets exist but no master key is set, when they were
        wrapped by another master key, or when the master key cannot decrypt them."""
        if not self.exists():
            return 0
        if self.master is None:
            # The common case, kept cheap: no keyset is wrapped (statistics skip the files), so
            # all are cleartext (a count Delta answers from its log).
            if not self.keys().where(F.col("wrappedBy").isNotNull()).limit(1).collect():
                return self.keys().count()
        counts = {r["wrappedBy"]: r["n"] for r in
                  self.keys().groupBy("wrappedBy").agg(F.count("*").alias("n")).collect()}
        cleartext = counts.pop(None, 0)
        if counts and self.master is None:
            raise KeyStoreError(
                f"key store {self.location}: {sum(counts.values()):,} keysets are encrypted with a master key "
                f"({', '.join(sorted(counts))}) but none is configured; set keys.master_key")
        if self.master is not None:
            others = sorted(w for w in counts if w != self.master.id)
            if others:
                raise KeyStoreError(
                    f"key store {self.location}: keysets are encrypted with master key {', '.join(others)}, "
                    f"not with the configured {self.master.id}; wrong keys.master_key?")
            sample = (self.keys().where(F.col("wrappedBy") == F.lit(self.master.id))
                      .select("keyLink", "keyset").limit(1).collect())
            if sample:
                try:
                    open_keyset(bytes(sample[0]["keyset"]), sample[0]["keyLink"], self.master)
                except ValueError:
                    raise KeyStoreError(
                        f"key store {self.location}: the configured master key ({self.master.id}) cannot "
                        "decrypt the stored keysets; wrong keys.master_key?") from None
        return cleartext

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
        new = (missing.mapInPandas(_key_generator(self.master), _NEW_KEY_SCHEMA)
               .withColumn("groupId", F.lit(group_id))
               .withColumn("kind", F.when(F.col("day").isNull(), "quarantine").otherwise("row"))
               .withColumn("expiresAt", expires_at(F.coalesce(F.col("day"), F.current_date()), retention_days))
               .withColumn("createdAt", F.current_timestamp())
               .withColumn("runId", F.lit(run_id))
               .withColumn("wrappedBy", F.lit(self.master.id if self.master else None).cast("string"))
               .select(*KEYS_SCHEMA.fieldNames()))
        def merge() -> int:
            # Insert-only: a key another run created in the meantime wins, and this run then
            # looks up and uses that one. A conflicting concurrent commit is retried.
            return inserted_rows(
                DeltaTable.forPath(self.spark, self.keys_path).alias("t")
                .merge(new.alias("s"), "t.groupId = s.groupId AND t.keyHash = s.keyHash AND t.day <=> s.day")
                .whenNotMatchedInsertAll().execute())

        return retry_on_conflict(merge, f"key store {self.location}: new keys")

    def lookup(self, group_id: str, pairs: DataFrame, day_col: str = "day") -> DataFrame:
        """`pairs` (with keyHash and a day column) plus __keyLink, __keyset (cleartext),
        __expiresAt."""
        keys = self.cleartext_keys(group_id).select(
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
        keys = self.cleartext_keys()
        utc = F.to_utc_timestamp(F.col("expiresAt"), F.current_timezone())
        return (first.join(keys, first["__keyLink"] == keys["keyLink"])
                .select(F.col("keyLink"), F.col("keyset").cast("string").alias("encryptionKey"),
                        F.lit(None).cast("string").alias("policyId"),
                        F.date_format(utc, "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("expiresAt"),
                        *[F.col(f"__first.{c}").alias(c) for c in order]))

    def keysets(self, links: DataFrame, cleartext: bool = False) -> DataFrame:
        """keyLink, keyset, day, kind, expiresAt of the keys whose link is in `links` (a
        DataFrame with a keyLink column); keysets as stored (maybe wrapped), or opened."""
        keys = (self.cleartext_keys() if cleartext else self.keys()).select(
            "keyLink", "keyset", "day", "kind", "expiresAt")
        return keys.join(F.broadcast(links.select("keyLink").distinct()), "keyLink", "inner")

    def keyset_json(self, keyset: bytes, key_link: str) -> bytes:
        """The cleartext Tink JSON of one stored keyset (unwrapped with the master key if needed),
        e.g. for STRM's decryption snippet."""
        return unwrap(keyset, key_link, self.master)
