"""A subject's rejected and quarantined rows: finding them and deleting them.

Quarantined rejected rows are under a per-run quarantine key shared by everyone whose row had no
readable day, so they are not linked to any subject: they are found by decrypting them (raw
records matched in Spark).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from strm_spark import columns as cols
from strm_spark._pandas import is_null
from strm_spark.config.model import JobConfig
from strm_spark.contract.model import field_col
from strm_spark.contract.records import raw_record_values
from strm_spark.keys.store import KeyStore
from strm_spark.storage import erase as ops
from strm_spark.storage.tables import read as read_table
from strm_spark.subjects._common import (
    _decrypted,
    _exists,
    _has_path,
    _meta,
    _month_ranges,
    _subjects_df,
)

if TYPE_CHECKING:
    from strm_spark.subjects.report import ErasureReport


def _raw_record_matcher(
    subjects: frozenset[str], subject_field: str, source_format: str, delimiter: str
):
    """A function telling whether a malformed record's raw text names one of `subjects`: as a
    whole CSV field, as the subject field's value of a JSON record, or as any value of a JSON
    text that does not parse."""

    def matches(raw: str | None) -> bool:
        return any(
            v in subjects for v in raw_record_values(raw, source_format, subject_field, delimiter)
        )

    return matches


def _quarantine_keys(config: JobConfig, store: KeyStore) -> DataFrame:
    return (
        store.cleartext_keys(config.group_id)
        .where(F.col("kind") == "quarantine")
        .select(F.col("keyLink").alias(cols.KEY_LINK), F.col("keyset").alias(cols.KEYSET))
    )


def _subject_rejected_rows(
    spark: SparkSession, config: JobConfig, keys: DataFrame, subjects: Sequence[str]
) -> DataFrame | None:
    """Rejected rows under `keys` (cleartext; `KEY_LINK`, `KEYSET`) that belong to `subjects`,
    decrypted: by the subject field when the reader could split the record, else by the raw
    record. For keys shared by many people: the group's quarantine keys, and row keys whose
    key-field value other subjects share. The ids travel inside the matching function, never as
    literals in the query plan."""
    contract = config.contract
    subject_field = contract.data_subject_field
    path, fmt = config.rejected.path, config.rejected.format
    if not subjects or not subject_field or not _exists(spark, path, fmt):
        return None
    rejected = read_table(spark, path, fmt)
    if not _has_path(rejected, subject_field):
        return None
    joined = rejected.join(
        F.broadcast(keys), _meta(rejected, "keyLink") == F.col(cols.KEY_LINK), "inner"
    )
    plain = _decrypted(joined, contract)
    wanted = frozenset(subjects)
    raw_matches = _raw_record_matcher(
        wanted, subject_field, config.source.record_format, config.source.delimiter
    )

    def flag(field_values: pd.Series, raw: pd.Series) -> pd.Series:
        return pd.Series(
            [
                (not is_null(v) and str(v) in wanted)
                or raw_matches(r if isinstance(r, str) else None)
                for v, r in zip(field_values, raw)
            ],
            dtype=bool,
        )

    match = F.pandas_udf(flag, "boolean")
    mine = plain.where(match(field_col(subject_field).cast("string"), F.col("rawRecord")))
    return mine.select(*[F.col(f"`{c}`") for c in rejected.columns])


def _others_rows(
    spark: SparkSession,
    config: JobConfig,
    keys: DataFrame,
    subjects: Sequence[str],
    days: Sequence[date],
) -> int:
    """Encrypted and rejected rows under `keys` (shared key links) that belong to other
    subjects than `subjects`: they become unreadable when the keys go. Counted before."""
    subject_field = config.contract.data_subject_field
    wanted = _subjects_df(spark, subjects)
    total = 0
    for path, fmt, pruned in (
        (config.encrypted.path, config.encrypted.format, bool(days)),
        (config.rejected.path, config.rejected.format, False),
    ):
        if not subject_field or not _exists(spark, path, fmt):
            continue
        table = read_table(spark, path, fmt)
        if pruned and "strmDay" in table.columns:
            table = table.where(F.expr(_month_ranges(days, "")))
        joined = table.join(
            F.broadcast(keys), _meta(table, "keyLink") == F.col(cols.KEY_LINK), "inner"
        )
        plain = _decrypted(joined, config.contract) if _has_path(table, subject_field) else None
        if plain is None:
            continue
        owner = field_col(subject_field).cast("string")
        total += plain.join(
            F.broadcast(wanted), owner == wanted["dataSubject"], "left_anti"
        ).count()
    return total


def _rejected_delete(
    spark: SparkSession, config: JobConfig, links: DataFrame, report: ErasureReport
) -> int:
    """Rejected rows whose strmMeta.keyLink is in `links` (the rejected table is not partitioned)."""
    if not ops.is_delta(spark, config.rejected.path):
        return 0
    return ops.merge_delete(spark, config.rejected.path, links, "t.strmMeta.keyLink = s.keyLink")


def _delete_subject_rejected(
    spark: SparkSession, config: JobConfig, keys: DataFrame, subjects: Sequence[str]
) -> int:
    """Delete the rejected rows of `subjects` under shared `keys` (found by decrypting them),
    matched by their key link and place (run, file, row); the keys themselves stay."""
    found = _subject_rejected_rows(spark, config, keys, subjects)
    if found is None:
        return 0
    ids = (
        found.select(_meta(found, "keyLink").alias("keyLink"), "runId", "sourceFile", "rowNumber")
        .distinct()
        .collect()
    )
    if not ids:
        return 0
    source = spark.createDataFrame(
        [tuple(r) for r in ids], "keyLink string, runId string, sourceFile string, rowNumber long"
    )
    return ops.merge_delete(
        spark,
        config.rejected.path,
        source,
        "t.strmMeta.keyLink = s.keyLink AND t.runId <=> s.runId AND t.sourceFile <=> s.sourceFile "
        "AND t.rowNumber <=> s.rowNumber",
    )


def _delete_quarantined(
    spark: SparkSession,
    config: JobConfig,
    store: KeyStore,
    subjects: Sequence[str],
    report: ErasureReport,
    linked: DataFrame | None,
) -> None:
    """Rejected rows of `subjects`: those under their own key links (`linked`), then those under
    quarantine keys, found by decrypting them (the quarantine keys stay: they are shared).
    One task, since both change the rejected table."""
    if linked is not None:
        report.rejected_rows_removed += _rejected_delete(spark, config, linked, report)
    if not store.exists():
        return
    removed = _delete_subject_rejected(spark, config, _quarantine_keys(config, store), subjects)
    report.rejected_rows_removed += removed
    report.quarantined_rows_removed += removed
