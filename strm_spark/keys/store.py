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
from datetime import date, datetime

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark.config.model import JobConfig
from strm_spark.crypto import cells as crypto
from strm_spark.crypto.envelope import MasterKey, load_master_key, open_keyset, unwrap, wrap
from strm_spark.errors import KeyStoreError
from strm_spark.keys.hierarchy import kek_ids, kek_master
from strm_spark.storage import Location
from strm_spark.storage.sinks import write
from strm_spark.storage.tables import create_table, is_delta, merge, read, sql_string

KEYS_SCHEMA = T.StructType(
    [
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
    ]
)

HASH_KEYS_SCHEMA = T.StructType(
    [
        T.StructField("groupId", T.StringType(), False),
        T.StructField("hashKey", T.BinaryType(), False),
        T.StructField("createdAt", T.TimestampType(), False),
    ]
)

# Statistics only on non-secret columns; keysets are BINARY, which Delta never indexes. Not on
# keyHash either: min/max statistics stay in _delta_log after a forget, and a key hash lets whoever
# holds the group's hash key test a guessed key-field value (random HMACs skip no files anyway).
# runId lets a run find its own quarantine key without reading every other run's.
_KEYS_STATS = "keyLink,groupId,day,kind,expiresAt,createdAt,runId,wrappedBy"

_NEW_KEY_SCHEMA = T.StructType(
    [
        T.StructField("keyHash", T.StringType(), True),
        T.StructField("day", T.DateType(), True),
        T.StructField("keyLink", T.StringType(), False),
        T.StructField("keyset", T.BinaryType(), False),
    ]
)


def _key_generator(
    master: MasterKey | None,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A mapInPandas function creating one keyset per row (on the workers), wrapped with the
    master key and its new key link when one is configured."""

    def generate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            n = len(pdf)
            links = [str(uuid.uuid4()) for _ in range(n)]
            keysets = [crypto.new_keyset() for _ in range(n)]
            if master is not None:
                keysets = [wrap(ks, link, master) for ks, link in zip(keysets, links)]
            yield pd.DataFrame(
                {
                    "keyHash": pdf["keyHash"],
                    "day": pdf["day"],
                    "keyLink": links,
                    "keyset": keysets,
                }
            )

    return generate


def expires_at(day: F.Column, retention_days: int) -> F.Column:
    """00:00Z of the day after `day`, plus the retention period (time-zone independent)."""
    return F.timestamp_seconds(
        (F.unix_date(day) + F.lit(1 + retention_days)).cast("long") * F.lit(86_400)
    )


@dataclass
class KeyStore:
    """The key store at `location`; with `master`, new keysets are stored encrypted with it and
    stored ones are opened with it."""

    spark: SparkSession
    location: Location
    master: MasterKey | None = None
    # The KMS key itself, under a key hierarchy: it opens keysets it wrapped directly before.
    legacy: MasterKey | None = None
    # A group whose key-encryption keyset `ensure` makes (none yet: the KMS key is `master`).
    kek_group: str | None = None

    @classmethod
    def for_job(
        cls,
        spark: SparkSession,
        config: JobConfig,
        with_master: bool = True,
        create_kek: bool = False,
    ) -> KeyStore:
        """The key store of a job, with its master key (read and checked to be usable) when the
        config names one and `with_master`; the one place a job's store is set up. A KMS key
        is used once, on the driver, to open the group's key-encryption keyset
        (`strm_spark.keys.hierarchy`), which then wraps and opens the keysets. Where the group
        has none, a run (`create_kek`) makes it in `ensure`, after its input is checked;
        readers use the KMS key itself."""
        master = load_master_key(config.master_key) if (with_master and config.master_key) else None
        if master is not None:  # a group rotated to a local key keeps its KEK too
            kek = kek_master(spark, config.key_store, config.group_id, master, create=False)
            if kek is not None:
                return cls(spark, config.key_store, kek, legacy=master)
            if create_kek and master.kind == "kms":
                return cls(
                    spark, config.key_store, master, legacy=master, kek_group=config.group_id
                )
        return cls(spark, config.key_store, master)

    def _masters(self) -> dict[str, MasterKey]:
        """The master keys that open stored keysets, by the id their `wrappedBy` records."""
        found = {m.id: m for m in (self.legacy, self.master) if m is not None}
        if self.master is not None:  # each key of a rotated KEK opens what it wrapped
            found.update({i: self.master for i in kek_ids(self.master)})
        return found

    @property
    def keys_path(self) -> Location:
        return self.location.child("keys")

    @property
    def hash_keys_path(self) -> Location:
        return self.location.child("hash_keys")

    @property
    def audit_keys_path(self) -> Location:
        return self.location.child("audit_keys")

    def exists(self) -> bool:
        return is_delta(self.spark, self.keys_path)

    def ensure(self) -> None:
        """Create the tables if needed (driver-side commands only; no Spark job), and the
        group's key-encryption keyset when a run found none."""
        if self.kek_group is not None and self.legacy is not None:
            self.master = kek_master(self.spark, self.location, self.kek_group, self.legacy)
            self.kek_group = None
        create_table(self.spark, self.keys_path, KEYS_SCHEMA, stats_columns=_KEYS_STATS)
        create_table(
            self.spark, self.hash_keys_path, HASH_KEYS_SCHEMA, stats_columns="groupId,createdAt"
        )

    def keys(self, group_id: str | None = None) -> DataFrame:
        df = read(self.spark, self.keys_path)
        return df if group_id is None else df.where(F.col("groupId") == F.lit(group_id))

    def cleartext_keys(self, group_id: str | None = None) -> DataFrame:
        """`keys()` with each keyset as cleartext Tink JSON: wrapped ones are opened with the
        master key (lazily, on the workers) for the code paths that encrypt or decrypt."""
        return self.opened(self.keys(group_id))

    def opened(
        self,
        df: DataFrame,
        keyset: str = "keyset",
        link: str = "keyLink",
        wrapped_by: str = "wrappedBy",
        strict: bool = True,
    ) -> DataFrame:
        """`df` with its `keyset` column opened with the master key where `wrapped_by` says it
        is wrapped (lazily, on the workers). Not `strict`: a keyset the master key cannot open
        becomes null (for callers that count such keysets and report them)."""
        if self.master is None:
            return df
        masters, default = self._masters(), self.master  # plain values: the UDF pickles them

        def open_one(stored: object, link: str, by: str) -> bytes | None:
            if stored is None:
                return None
            try:
                return unwrap(bytes(stored), link, masters.get(by, default))
            except ValueError:
                if strict:
                    raise
                return None

        @F.pandas_udf("binary")
        def opened(stored: pd.Series, links: pd.Series, by: pd.Series) -> pd.Series:
            return pd.Series(
                [open_one(k, link, b) for k, link, b in zip(stored, links, by)], dtype=object
            )

        return df.withColumn(
            keyset,
            F.when(F.col(wrapped_by).isNull(), F.col(keyset)).otherwise(
                opened(F.col(keyset), F.col(link), F.col(wrapped_by))
            ),
        )

    def keys_for_days(
        self, group_id: str, first: date | None, last: date | None, run_id: str
    ) -> DataFrame:
        """The group's keys of the days `first`..`last` and this run's quarantine key: a read
        that Delta's statistics on `day` (and `runId`) bound to the batch's days, whatever the
        store's history holds. The condition names only the batch's day range."""
        in_range = (
            F.col("day").between(F.lit(first), F.lit(last)) if first is not None else F.lit(False)
        )
        quarantine = F.col("day").isNull() & (F.col("runId") == F.lit(run_id))
        return self.keys(group_id).where(in_range | quarantine)

    def hash_key(self, group_id: str) -> bytes:
        """The group's HMAC secret for key-field values; created on first use."""
        return self._group_secret(self.hash_keys_path, group_id)

    def audit_key(self, group_id: str) -> bytes:
        """The group's HMAC secret naming subjects in audit records; created on first use and
        never deleted, so an auditor can later check whether a given id was forgotten."""
        create_table(
            self.spark, self.audit_keys_path, HASH_KEYS_SCHEMA, stats_columns="groupId,createdAt"
        )
        return self._group_secret(self.audit_keys_path, group_id)

    def _group_secret(self, path: str, group_id: str) -> bytes:
        found = self._read_secret(path, group_id)
        if found is not None:
            return found
        secret = secrets.token_bytes(32)
        candidate = self.spark.createDataFrame(
            [(group_id, bytearray(secret))], "groupId string, hashKey binary"
        ).withColumn("createdAt", F.current_timestamp())
        # Insert-only, so concurrent first runs of a group agree on one secret: a MERGE that
        # inserted committed against a table without the group's secret (a concurrent insert
        # makes it conflict and retry), so its secret is the one; otherwise another's is read.
        metrics = merge(
            candidate,
            path,
            "t.groupId = s.groupId",
            "WHEN NOT MATCHED THEN INSERT *",
            f"key store {self.location}: group secret",
        )
        if metrics is not None and metrics["num_inserted_rows"] == 1:
            return secret
        found = self._read_secret(path, group_id)
        if found is None:
            raise KeyStoreError(
                f"key store {self.location}: no secret for group {group_id!r} in {path}"
            )
        return found

    def _read_secret(self, path: str, group_id: str) -> bytes | None:
        rows = (
            read(self.spark, path)
            .where(F.col("groupId") == F.lit(group_id))
            .select("hashKey", "createdAt")
            .collect()
        )  # one row per group (insert-only MERGE)
        return bytes(min(rows, key=lambda r: r["createdAt"])["hashKey"]) if rows else None

    def check_master_key(self, keys: DataFrame | None = None) -> int:
        """Check, before anything is written, that the configured master key (or its absence)
        fits the keysets in `keys` (the whole store by default; a run passes the keys of its
        batch's days); returns how many of them are stored in cleartext. One aggregate.

        Raises KeyStoreError when wrapped keysets exist but no master key is set, when they were
        wrapped by another master key, or when the master key cannot decrypt them."""
        if keys is None:
            if not self.exists():
                return 0
            keys = self.keys()
        if (
            self.master is None
            and not keys.where(F.col("wrappedBy").isNotNull()).limit(1).collect()
        ):
            # The common case, kept cheap: statistics on wrappedBy skip every file, and the
            # count is answered from the Delta log.
            return keys.count()
        rows = (
            keys.groupBy("wrappedBy")
            .agg(F.count("*").alias("n"), F.first(F.struct("keyLink", "keyset")).alias("sample"))
            .collect()
        )
        return self.check_wrapping({r["wrappedBy"]: (r["n"], r["sample"]) for r in rows})

    def check_wrapping(self, found: dict[str | None, tuple[int, object]]) -> int:
        """`check_master_key` on counts already taken: {wrappedBy: (keysets, a sample row with
        keyLink and keyset)}; returns the number of cleartext keysets."""
        counts = {w: n for w, (n, _) in found.items()}
        cleartext = counts.pop(None, 0)
        if counts and self.master is None:
            raise KeyStoreError(
                f"key store {self.location}: {sum(counts.values()):,} keysets are encrypted with a master key "
                f"({', '.join(sorted(counts))}) but none is configured; set keys.master_key"
            )
        if self.master is not None:
            masters = self._masters()
            others = sorted(w for w in counts if w not in masters)
            if others:
                raise KeyStoreError(
                    f"key store {self.location}: keysets are encrypted with master key {', '.join(others)}, "
                    f"not with the configured {self.master.id}; wrong keys.master_key?"
                )
            sample = found.get(self.master.id, (0, None))[1]
            if sample is not None:
                try:
                    open_keyset(bytes(sample["keyset"]), sample["keyLink"], self.master)
                except ValueError:
                    raise KeyStoreError(
                        f"key store {self.location}: the configured master key ({self.master.id}) cannot "
                        "decrypt the stored keysets; wrong keys.master_key?"
                    ) from None
        return cleartext

    def insert_new_keys(
        self,
        group_id: str,
        missing: DataFrame,
        retention_days: int,
        run_id: str,
        first: date | None,
        last: date | None,
    ) -> int:
        """New keys for the (keyHash, day) pairs of `missing`; returns how many were inserted.
        An insert-only MERGE bounded to the batch's days `first`..`last` (and quarantine keys):
        a key another run created in the meantime wins, and this run then looks up and uses
        that one. A conflicting concurrent commit is retried. `day` may be null (quarantine)."""
        new = self._new_keys(group_id, missing, retention_days, run_id)
        days = (
            f"(t.day BETWEEN DATE'{first.isoformat()}' AND DATE'{last.isoformat()}' OR t.day IS NULL)"
            if first is not None
            else "t.day IS NULL"
        )
        group = sql_string(group_id)
        metrics = merge(
            new,
            self.keys_path,
            f"t.groupId = {group} AND {days} AND t.keyHash = s.keyHash AND t.day <=> s.day",
            "WHEN NOT MATCHED THEN INSERT *",
            f"key store {self.location}: new keys",
        )
        return int(metrics["num_inserted_rows"] or 0) if metrics is not None else 0

    def _new_keys(
        self, group_id: str, missing: DataFrame, retention_days: int, run_id: str
    ) -> DataFrame:
        """Rows of the keys table for the (keyHash, day) pairs of `missing`: a new keyset each
        (made on the workers; not deterministic, so evaluate it once)."""
        return (
            missing.mapInPandas(_key_generator(self.master), _NEW_KEY_SCHEMA)
            .withColumn("groupId", F.lit(group_id))
            .withColumn("kind", F.when(F.col("day").isNull(), "quarantine").otherwise("row"))
            .withColumn(
                "expiresAt", expires_at(F.coalesce(F.col("day"), F.current_date()), retention_days)
            )
            .withColumn("createdAt", F.current_timestamp())
            .withColumn("runId", F.lit(run_id))
            .withColumn("wrappedBy", F.lit(self.master.id if self.master else None).cast("string"))
            .select(*KEYS_SCHEMA.fieldNames())
        )

    def append_quarantine_key(
        self, group_id: str, missing: DataFrame, retention_days: int, run_id: str
    ) -> tuple[DataFrame, datetime]:
        """Commit this run's quarantine key (`missing`: its one (keyHash, null day) pair) with a
        plain append: no MERGE and no read of the store, since no other run can hold a key for
        this run id and a resumed run finds the one it committed. The row is made once and
        collected, so the committed key and the returned one are the same; returns it (keys
        schema) and its expiry time."""
        rows = self._new_keys(group_id, missing, retention_days, run_id).collect()
        if len(rows) != 1:
            raise KeyStoreError(
                f"key store {self.location}: expected one quarantine key, made {len(rows)}"
            )
        key = self.spark.createDataFrame(rows, KEYS_SCHEMA)
        write(key, self.keys_path, "append")
        return key, rows[0]["expiresAt"]

    def keys_export(self, used: DataFrame, keys: DataFrame | None = None) -> DataFrame:
        """STRM's keys.csv rows (keyLink, encryptionKey, policyId, expiresAt) for the key links
        in `used` (a `__keyLink` column plus ordering columns: first use decides the order),
        from `keys` (stored keys; the whole store by default)."""
        order = [c for c in used.columns if c != "__keyLink"]
        first = used.groupBy("__keyLink").agg(F.min(F.struct(*order)).alias("__first"))
        keys = self.opened(keys) if keys is not None else self.cleartext_keys()
        utc = F.to_utc_timestamp(F.col("expiresAt"), F.current_timezone())
        return first.join(keys, first["__keyLink"] == keys["keyLink"]).select(
            F.col("keyLink"),
            F.col("keyset").cast("string").alias("encryptionKey"),
            F.lit(None).cast("string").alias("policyId"),
            F.date_format(utc, "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("expiresAt"),
            *[F.col(f"__first.{c}").alias(c) for c in order],
        )

    def keysets(self, links: DataFrame, cleartext: bool = False) -> DataFrame:
        """keyLink, keyset, day, kind, expiresAt of the keys whose link is in `links` (a
        DataFrame with a keyLink column); keysets as stored (maybe wrapped), or opened."""
        keys = (self.cleartext_keys() if cleartext else self.keys()).select(
            "keyLink", "keyset", "day", "kind", "expiresAt"
        )
        return keys.join(F.broadcast(links.select("keyLink").distinct()), "keyLink", "inner")
