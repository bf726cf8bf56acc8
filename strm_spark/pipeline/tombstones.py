"""Stage 2b, tombstones: rows of subjects forgotten before their event time are dropped before
any key, output or subject entry is made of them (see `strm_spark.keys.tombstones`)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from strm_spark import columns as cols
from strm_spark.columns import CORRUPT, TOMBSTONED
from strm_spark.config.model import JobConfig
from strm_spark.contract.records import raw_record_values
from strm_spark.crypto.masking import hmac_column, hmac_sha256_hex


def with_tombstoned(
    rows: DataFrame, tombs: DataFrame, audit_key: bytes, config: JobConfig
) -> DataFrame:
    """`rows` with a TOMBSTONED flag: the row's subject has a tombstone and the row's event
    time is before the forget, or unknown (no readable time, or a malformed record whose raw
    text names the subject). Only the batch's distinct subjects are hashed, in one small action
    whose result (the forgotten subjects the batch names) is collected, so that the run's later
    reads of `rows` do not repeat it."""
    subjects = rows.where(F.col(cols.SUBJECT).isNotNull()).select(cols.SUBJECT).distinct()
    found = (
        subjects.withColumn("subjectHash", hmac_column(F.col(cols.SUBJECT), audit_key))
        .join(tombs, "subjectHash")
        .select(cols.SUBJECT, F.unix_millis("forgottenAt").alias("__forgotten_ms"))
        .collect()
    )
    hit = rows.sparkSession.createDataFrame(found, f"{cols.SUBJECT} string, __forgotten_ms bigint")
    flagged = rows.join(F.broadcast(hit), cols.SUBJECT, "left")
    before = F.col("__forgotten_ms").isNotNull() & (
        F.col(cols.EPOCH_MS).isNull() | (F.col(cols.EPOCH_MS) < F.col("__forgotten_ms"))
    )
    flag = F.coalesce(before, F.lit(False))
    subject_field = config.contract.data_subject_field
    if CORRUPT in rows.columns and subject_field:
        hashes = frozenset(r["subjectHash"] for r in tombs.select("subjectHash").collect())
        named = _raw_record_flag(
            audit_key, hashes, config.source.record_format, subject_field, config.source.delimiter
        )
        flag = flag | (F.col(CORRUPT).isNotNull() & F.coalesce(named(F.col(CORRUPT)), F.lit(False)))
    return flagged.withColumn(TOMBSTONED, flag).drop("__forgotten_ms")


def _raw_record_flag(
    audit_key: bytes, hashes: frozenset[str], source_format: str, subject_field: str, delimiter: str
) -> Callable[[Column], Column]:
    """Whether a malformed record's raw text names a tombstoned subject: one of its values
    (`raw_record_values`) whose audit HMAC is a tombstone. A raw record has no readable event
    time, so it is never known to be newer than the forget."""

    def flag(raws: pd.Series) -> pd.Series:
        return pd.Series(
            [
                any(
                    hmac_sha256_hex(audit_key, v) in hashes
                    for v in raw_record_values(r, source_format, subject_field, delimiter)
                )
                for r in raws
            ],
            dtype=bool,
        )

    return F.pandas_udf(flag, "boolean")
