"""Stage 5, derive: the rows of each output from the rows matched with their keys: encrypted,
derived (decrypted for a purpose, masked) and rejected. Pure transforms but for the row numbers
of rejected rows, which need one small aggregate."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from strm_spark import columns as cols
from strm_spark.columns import BLOCK, CORRUPT, FILE, ROW_ID
from strm_spark.config.model import DerivedConfig, JobConfig
from strm_spark.crypto.masking import masker_for
from strm_spark.pipeline import transforms as tf
from strm_spark.pipeline.encrypt import Encryptor


def with_keys(rows: DataFrame, keymap: DataFrame) -> DataFrame:
    """Each row with its key link, keyset and expiry, from the (value, day) -> key map."""
    return rows.join(
        keymap,
        rows[cols.KEY_VALUE].eqNullSafe(keymap["__jk_value"])
        & rows[cols.DAY].eqNullSafe(keymap["__jk_day"]),
        "left",
    ).drop("__jk_value", "__jk_day")


def _row_numbers(groups: DataFrame) -> DataFrame:
    """(file, block) -> the id of its first row and the rows before it in its file, from the
    run's scan (`keys.scan`): one small aggregate, collected.

    Rows of one file split are read in order by one task, so their monotonically increasing
    ids are consecutive; the offsets of earlier splits come from the blocks' row counts."""
    blocks = (
        groups.groupBy(FILE, BLOCK)
        .agg(
            F.min("first_id").alias("first_id"), F.sum(F.col("n") + F.col("tombstoned")).alias("n")
        )
        .collect()
    )
    offsets = []
    for file in {b[FILE] for b in blocks}:
        before = 0
        for b in sorted((b for b in blocks if b[FILE] == file), key=lambda b: b[BLOCK]):
            offsets.append((file, b[BLOCK], b["first_id"], before))
            before += b["n"]
    return groups.sparkSession.createDataFrame(
        offsets, f"{FILE} string, {BLOCK} long, first_id long, before long"
    )


def with_row_numbers(df: DataFrame, groups: DataFrame, any_rejected: bool) -> DataFrame:
    """`rowNumber`: the 1-based record number in its file (header not counted) of each row,
    needed by rejected rows only (null when no row was rejected). `groups`: the run's scan."""
    if not any_rejected:
        return df.withColumn("rowNumber", F.lit(None).cast("long"))
    numbers = _row_numbers(groups)
    return (
        df.join(F.broadcast(numbers), [FILE, BLOCK], "left")
        .withColumn("rowNumber", F.col(ROW_ID) - F.col("first_id") + F.col("before") + 1)
        .drop("first_id", "before")
    )


def _pii_targets(config: JobConfig) -> dict[str, str]:
    return {cols.pii_column(i): cols.enc_column(i) for i in range(len(config.contract.pii_names))}


def valid_rows(matched: DataFrame, config: JobConfig, encryptor: Encryptor) -> DataFrame:
    """Rows without a reject reason, with their PII fields' ciphertext."""
    return encryptor.encrypt(matched.where(F.size(cols.REASONS) == 0), _pii_targets(config))


def encrypted_rows(valid: DataFrame, config: JobConfig, carry: tuple[str, ...] = ()) -> DataFrame:
    return tf.encrypted_rows(valid, config.contract, config.event_contract_ref, carry)


def derived_rows(
    valid: DataFrame,
    config: JobConfig,
    d: DerivedConfig,
    mask_seed: bytes | None,
    carry: tuple[str, ...] = (),
) -> DataFrame:
    masks = {name: masker_for(d.hash_type, d.inline_seed, mask_seed) for name in d.masked_fields}
    return tf.derived_rows(
        valid,
        config.contract,
        config.event_contract_ref,
        d.consent_type,
        d.consent_levels,
        masks,
        carry,
    )


def rejected_rows(
    matched: DataFrame, config: JobConfig, encryptor: Encryptor, run_id: str
) -> DataFrame:
    """Rows with a reject reason: PII and a malformed record's raw text encrypted (on these
    rows alone), with where they came from and why."""
    rejected = encryptor.encrypt(
        matched.where(F.size(cols.REASONS) > 0), {**_pii_targets(config), CORRUPT: cols.ENC_CORRUPT}
    )
    return tf.rejected_rows(rejected, config.contract, config.event_contract_ref, run_id)


def data_subject_links(entries: DataFrame, keymap: DataFrame, group_id: str) -> DataFrame:
    """Distinct (data subject, key link) entries: the scan's (subject, key value, day) entries
    (`keys.subject_entries`) matched with the batch's key map."""
    return (
        with_keys(entries, keymap)
        .where(F.col(cols.KEY_LINK).isNotNull())
        .select(
            F.col(cols.SUBJECT).alias("dataSubject"),
            F.col(cols.KEY_LINK).alias("keyLink"),
            F.col(cols.EXPIRES_AT).alias("expiresAt"),
        )
        .distinct()
        .withColumn("groupId", F.lit(group_id))
        .withColumn("createdAt", F.current_timestamp())
        .select("dataSubject", "keyLink", "groupId", "expiresAt", "createdAt")
    )
