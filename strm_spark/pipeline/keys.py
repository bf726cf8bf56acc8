"""Stage 3, keys: the batch's (key value, UTC day) pairs, counted in one aggregate, and their
keys: looked up in the key store, created where missing (committed before any data), and kept
as a small (value, day) -> key map in memory for the encrypt stage.

Every read of the key store here is bounded to the batch's day range (and the run's own
quarantine key), so a run costs what its batch costs, not what the store's history holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from strm_spark import columns as cols
from strm_spark import consent as consent_rules
from strm_spark.config.model import JobConfig
from strm_spark.crypto.masking import hmac_column
from strm_spark.errors import KeyStoreError
from strm_spark.keys.store import KeyStore
from strm_spark.pipeline.encrypt import Encryptor

# Up to this many (key value, day) pairs per run, the key map is broadcast to the tasks.
BROADCAST_KEYS = 200_000


@dataclass(frozen=True)
class Totals:
    rows: int
    rejected: int
    tombstoned: int
    pairs: int
    quarantine: int
    first_day: date | None
    last_day: date | None
    derived: dict[str, int]
    reasons: dict[str, int]


def scan(rows: DataFrame, config: JobConfig) -> DataFrame:
    """The one aggregate a run reads every row for: groups of (key value, day, data subject,
    reasons of a rejected row, file, block, and a rejected row's every column), each with its
    row counts (kept and tombstoned), derived-output counts and first row id.

    Valid rows share an empty reason list and a null row, a key value names one subject or a
    few, and a (value, day) lies in one or two blocks, so there are about as many groups as
    (value, day) pairs, plus one per rejected row: the rejected table is made from them
    (`rejected_source`) without reading the source again. Only counts and a minimum, which
    Spark's compiled hash aggregate computes (a set of subjects per pair made it fall back to
    sorting). The pairs, the counts, the rejection reasons, the row numbers' block offsets and
    the data subjects' entries come from it too (`rows`: validated, maybe with TOMBSTONED)."""
    kept = ~F.col(cols.TOMBSTONED) if cols.TOMBSTONED in rows.columns else F.lit(True)
    valid = kept & (F.size(cols.REASONS) == 0)
    derived = [
        F.count_if(
            valid
            & consent_rules.allows_column(F.col(cols.CONSENT), d.consent_type, d.consent_levels)
        ).alias(f"__d{i}")
        for i, d in enumerate(config.derived)
    ]
    row = F.struct(*[cols.col(c) for c in rows.columns if c != cols.TOMBSTONED])
    rejected = F.when(kept & (F.size(cols.REASONS) > 0), row).alias(cols.REJECTED_ROW)
    keys = (cols.KEY_VALUE, cols.DAY, cols.SUBJECT, cols.REASONS, cols.FILE, cols.BLOCK, rejected)
    return rows.groupBy(*keys).agg(
        F.count_if(kept).alias("n"),
        F.count_if(~kept).alias("tombstoned"),
        F.min(cols.ROW_ID).alias("first_id"),
        *derived,
    )


def totals(groups: DataFrame, config: JobConfig) -> Totals:
    """The run's counts from the (cached) scan in one aggregate; rejection reasons in a second
    one, only when rows were rejected."""
    kept = F.col("n") > 0
    rejected = F.size(cols.REASONS) > 0
    t = groups.agg(
        F.coalesce(F.sum("n"), F.lit(0)).alias("rows"),
        F.coalesce(F.sum(F.when(rejected, F.col("n"))), F.lit(0)).alias("rejected"),
        F.coalesce(F.sum("tombstoned"), F.lit(0)).alias("tombstoned"),
        F.count_distinct(F.when(kept, F.struct(cols.KEY_VALUE, cols.DAY))).alias("pairs"),
        F.coalesce(F.max((kept & F.col(cols.DAY).isNull()).cast("int")), F.lit(0)).alias(
            "quarantine"
        ),
        F.min(F.when(kept, F.col(cols.DAY))).alias("first"),
        F.max(F.when(kept, F.col(cols.DAY))).alias("last"),
        *[
            F.coalesce(F.sum(f"__d{i}"), F.lit(0)).alias(f"__d{i}")
            for i in range(len(config.derived))
        ],
    ).first()
    reasons = {}
    if t["rejected"]:
        reasons = {
            r["r"]: int(r["count"])
            for r in groups.where(rejected & kept)
            .select(F.explode(cols.REASONS).alias("r"), "n")
            .groupBy("r")
            .agg(F.sum("n").alias("count"))
            .collect()
        }
    return Totals(
        t["rows"],
        t["rejected"],
        t["tombstoned"],
        t["pairs"],
        t["quarantine"],
        t["first"],
        t["last"],
        {d.name: t[f"__d{i}"] for i, d in enumerate(config.derived)},
        reasons,
    )


def pairs(groups: DataFrame, hash_key: bytes, run_id: str) -> DataFrame:
    """The batch's (key value, day) pairs from the scan, each with its key hash (rows whose
    day is unknown share the run's quarantine pair)."""
    found = (
        groups.where(F.col("n") > 0).groupBy(cols.KEY_VALUE, cols.DAY).agg(F.sum("n").alias("n"))
    )
    return found.withColumn(
        "keyHash",
        F.when(F.col(cols.DAY).isNull(), F.lit(f"quarantine:{run_id}")).otherwise(
            hmac_column(F.col(cols.KEY_VALUE), hash_key)
        ),
    )


def rejected_source(groups: DataFrame) -> DataFrame:
    """The rejected rows as validation left them (every column), from the scan's groups."""
    return groups.where(F.col(cols.REJECTED_ROW).isNotNull()).select(f"{cols.REJECTED_ROW}.*")


def subject_entries(groups: DataFrame) -> DataFrame:
    """The distinct (data subject, key value, day) entries of the scan (rows of a known day)."""
    return (
        groups.where(
            F.col(cols.DAY).isNotNull() & F.col(cols.SUBJECT).isNotNull() & (F.col("n") > 0)
        )
        .select(cols.KEY_VALUE, cols.DAY, cols.SUBJECT)
        .distinct()
    )


class BatchKeys:
    """The keys of one batch: looked up (`look_up`), created where missing (`create_missing`),
    then a cached (value, day) -> key map (`key_map`). `release()` frees every cache."""

    def __init__(
        self, store: KeyStore, config: JobConfig, pairs: DataFrame, counts: Totals, run_id: str
    ) -> None:
        self.store, self.config, self.pairs, self.counts, self.run_id = (
            store,
            config,
            pairs,
            counts,
            run_id,
        )
        self._caches: list[DataFrame] = []
        self.missing = self.missing_quarantine = 0
        self.cleartext = 0
        self.wrapped: dict[str | None, int] = {}
        self._found: DataFrame | None = None
        self._quarantine: DataFrame | None = None  # the quarantine key this run appended
        self._expiry: tuple[datetime | None, datetime | None] = (None, None)

    def _stored(self) -> DataFrame:
        keys = self.store.keys_for_days(
            self.config.group_id, self.counts.first_day, self.counts.last_day, self.run_id
        )
        return keys.select(
            F.col("keyHash").alias("__k_hash"),
            F.col("day").alias("__k_day"),
            F.col("keyLink").alias(cols.KEY_LINK),
            F.col("keyset").alias(cols.KEYSET),
            F.col("expiresAt").alias(cols.EXPIRES_AT),
            "wrappedBy",
        )

    def _join(self, how: str) -> DataFrame:
        stored, pairs = self._stored(), self.pairs
        cond = (pairs["keyHash"] == stored["__k_hash"]) & pairs[cols.DAY].eqNullSafe(
            stored["__k_day"]
        )
        return pairs.join(stored, cond, how).drop("__k_hash", "__k_day")

    def _cache(self, df: DataFrame, level: StorageLevel) -> DataFrame:
        df = df.persist(level)
        self._caches.append(df)
        return df

    def _with_keysets(self, found: DataFrame, encryptor: Encryptor) -> DataFrame:
        """The key map's columns: keysets opened (null where the master key cannot open one)
        and in the encryptor's form."""
        opened = self.store.opened(found, cols.KEYSET, cols.KEY_LINK, strict=False)
        return opened.select(
            F.col(cols.KEY_VALUE).alias("__jk_value"),
            F.col(cols.DAY).alias("__jk_day"),
            "keyHash",
            cols.KEY_LINK,
            encryptor.keyset_column(F.col(cols.KEYSET)).alias(cols.KEYSET),
            cols.EXPIRES_AT,
            "wrappedBy",
        )

    def _widen_expiry(self, lo: datetime | None, hi: datetime | None) -> None:
        self._expiry = (
            min(filter(None, [self._expiry[0], lo]), default=None),
            max(filter(None, [self._expiry[1], hi]), default=None),
        )

    def look_up(self, encryptor: Encryptor) -> None:
        """Find the batch's stored keys, open them, and check the master key against them: one
        cached join and one aggregate; nothing is written."""
        self._found = self._cache(
            self._with_keysets(self._join("left"), encryptor), StorageLevel.MEMORY_ONLY
        )
        groups = (
            self._found.groupBy(
                F.col(cols.KEY_LINK).isNull().alias("missing"),
                "wrappedBy",
                F.col("__jk_day").isNull().alias("quarantine"),
                (F.col(cols.KEY_LINK).isNotNull() & F.col(cols.KEYSET).isNull()).alias("unopened"),
            )
            .agg(
                F.count("*").alias("n"),
                F.min(cols.EXPIRES_AT).alias("lo"),
                F.max(cols.EXPIRES_AT).alias("hi"),
            )
            .collect()
        )
        stored: dict[str | None, tuple[int, object]] = {}
        unopened = 0
        for g in groups:
            if g["missing"]:
                self.missing += g["n"]
                self.missing_quarantine += g["n"] if g["quarantine"] else 0
                continue
            stored[g["wrappedBy"]] = (stored.get(g["wrappedBy"], (0, None))[0] + g["n"], None)
            unopened += g["n"] if g["unopened"] else 0
            self._widen_expiry(g["lo"], g["hi"])
        self.wrapped = {by: n for by, (n, _) in stored.items()}  # the store's form
        self.cleartext = self.store.check_wrapping(stored)
        if unopened:
            raise KeyStoreError(
                f"key store {self.store.location}: the configured master key "
                f"({self.store.master.id}) cannot decrypt {unopened:,} stored keysets; "
                "wrong keys.master_key?"
            )

    def create_missing(self) -> int:
        """Commit keys for the pairs the store lacks; returns how many of the batch's row keys
        this run created (the quarantine key not counted)."""
        if not self.missing:
            return 0
        missing = (
            self._found.where(F.col(cols.KEY_LINK).isNull())
            .select("keyHash", F.col("__jk_day").alias("day"))
            .distinct()
        )
        if self.missing == self.missing_quarantine:  # only the run's own quarantine key is new
            self._quarantine, expires = self.store.append_quarantine_key(
                self.config.group_id, missing, self.config.retention_days, self.run_id
            )
            self._widen_expiry(expires, expires)
            return 0
        inserted = self.store.insert_new_keys(
            self.config.group_id,
            missing,
            self.config.retention_days,
            self.run_id,
            self.counts.first_day,
            self.counts.last_day,
        )
        return max(0, inserted - self.missing_quarantine)

    def key_map(self, encryptor: Encryptor) -> tuple[DataFrame, datetime | None, datetime | None]:
        """The cached (value, day) -> key link, keyset (in the encryptor's form), expiresAt map,
        broadcast when small, and the range of its expiry times. Read again from the store
        only when this run created row keys (a new quarantine key alone is added as committed)."""
        keymap = self._found
        if (
            self._quarantine is not None
        ):  # the stored keys found, plus the quarantine key just committed
            key = self._with_keysets(
                self._quarantine.select(
                    F.lit(None).cast("string").alias(cols.KEY_VALUE),
                    F.col("day").alias(cols.DAY),
                    "keyHash",
                    F.col("keyLink").alias(cols.KEY_LINK),
                    F.col("keyset").alias(cols.KEYSET),
                    F.col("expiresAt").alias(cols.EXPIRES_AT),
                    "wrappedBy",
                ),
                encryptor,
            ).drop("__jk_value", "__jk_day")
            # every quarantine pair (rows of unknown day, any key value) shares that one key
            pairs = self._found.where(F.col(cols.KEY_LINK).isNull()).select(
                "__jk_value", "__jk_day", "keyHash"
            )
            keymap = self._found.where(F.col(cols.KEY_LINK).isNotNull()).unionByName(
                pairs.join(key, "keyHash")
            )
        elif self.missing:
            keymap = self._cache(
                self._with_keysets(self._join("inner"), encryptor), StorageLevel.MEMORY_ONLY
            )
            seen = keymap.agg(
                F.count("*").alias("n"),
                F.min(cols.EXPIRES_AT).alias("lo"),
                F.max(cols.EXPIRES_AT).alias("hi"),
            ).first()
            if seen["n"] != self.counts.pairs:
                raise KeyStoreError(
                    f"key store {self.store.location}: {self.counts.pairs - seen['n']:,} of the "
                    "batch's keys are missing after they were created; rerun the job"
                )
            self._expiry = (seen["lo"], seen["hi"])
            self._found.unpersist()  # the new map holds what the run needs
        keymap = keymap.drop("keyHash", "wrappedBy")
        if self.counts.pairs <= BROADCAST_KEYS:
            keymap = F.broadcast(keymap)
        return keymap, self._expiry[0], self._expiry[1]

    def release(self) -> None:
        for df in self._caches:
            df.unpersist()
        self._caches.clear()
