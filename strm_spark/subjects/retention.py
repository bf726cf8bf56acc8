"""Purge-expired: keys past their retention destroyed, their rows deleted, the tables purged."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from strm_spark import private
from strm_spark.config.model import JobConfig
from strm_spark.delta import erase as ops
from strm_spark.delta.tables import sql_string
from strm_spark.keys.store import KeyStore
from strm_spark.subjects import audit
from strm_spark.subjects._common import (
    _data_subjects,
    _iso,
)
from strm_spark.subjects.quarantine import (
    _rejected_delete,
)
from strm_spark.subjects.report import (
    ErasureReport,
    _audit_record,
    _derived_deletes,
    _new_audit_id,
    _purge,
    _require_delta_outputs,
    _Steps,
)


def purge_expired(
    spark: SparkSession,
    config: JobConfig,
    now: datetime | None = None,
    *,
    stop_after_step: int | None = None,
) -> ErasureReport:
    """Delete and physically purge the group's keys whose expiresAt is at or before `now`; see
    `_purge_expired`. Files it rewrites stay owner-only on a local file system."""
    try:
        return _purge_expired(spark, config, now, stop_after_step)
    finally:
        private.seal(private.job_locations(config))


def _purge_expired(
    spark: SparkSession, config: JobConfig, now: datetime | None, stop_after_step: int | None
) -> ErasureReport:
    """Delete and physically purge the group's keys whose expiresAt is at or before `now`
    (default: the current time), with the data subjects entries, derived rows and rejected
    rows of their key links; audit record as for forget.

    The key store is changed last (rows first, then keys): the expired keys are how a rerun
    after a crash finds the links whose rows are still to be deleted."""
    _require_delta_outputs(config)
    cutoff = now or datetime.now(UTC)
    cutoff = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=UTC)
    cutoff = cutoff.astimezone(UTC)
    cutoff_col = F.timestamp_micros(F.lit(_epoch_micros(cutoff)))
    store = KeyStore.for_job(spark, config, with_master=False)
    report = ErasureReport(
        "purge-expired",
        audit_id=_new_audit_id(),
        audit_table=config.audit,
        expired_before=_iso(cutoff),
    )
    audit_key = store.audit_key(config.group_id)
    audit.append(spark, config.audit, _audit_record(report, config, [], "started", cutoff))
    steps = _Steps(report, stop_after_step)

    expired = None
    days: list[date] = []
    if store.exists():
        expired = (
            store.keys(config.group_id)
            .where(F.col("expiresAt") <= cutoff_col)
            .select("keyLink", "day", "kind")
            .persist()
        )
        summary = expired.agg(F.count("*").alias("n"), F.collect_set("day").alias("days")).first()
        report.key_links = int(summary["n"])
        days = sorted(d for d in summary["days"] if d is not None)

    hashes: list[str] = []
    ds = _data_subjects(spark, config)
    # SQL: a group id and a cut-off time, no personal data (Delta keeps it in commitInfo).
    expired_in_group = (
        f"groupId = {sql_string(config.group_id)} "
        f"AND expiresAt <= timestamp_micros({_epoch_micros(cutoff)})"
    )
    try:
        # Step 1: rows of the expired links: derived, rejected, then the data subjects entries
        # (an entry carries its key's expiresAt, so a cut-off finds them without the keys).
        if expired is not None and report.key_links:
            tasks = _derived_deletes(
                spark,
                config,
                expired.where(F.col("kind") == "row").select("keyLink"),
                days,
                None,
                report,
            )
            rejected: list[int] = []
            tasks.append(
                lambda: rejected.append(
                    _rejected_delete(spark, config, expired.select("keyLink"), report)
                )
            )
            ops.in_parallel(tasks)
            report.rejected_rows_removed += sum(rejected)
        else:
            report.derived_rows_removed = {d.name: 0 for d in config.derived}
        if ds is not None:
            subjects = [
                r["dataSubject"]
                for r in ds.where(F.col("expiresAt") <= cutoff_col)
                .select("dataSubject")
                .distinct()
                .collect()
            ]
            report.subjects_found = len(subjects)
            hashes = audit.subject_hashes(audit_key, subjects)
            if subjects:
                report.subject_entries_removed = ops.delete_where(
                    spark, config.data_subjects.path, expired_in_group
                )
        if steps.done(1, "rows"):
            return report

        # Step 2: the expired keys.
        if expired is not None and report.key_links:
            report.keys_removed = ops.delete_where(spark, store.keys_path, expired_in_group)
        if steps.done(2, "keys"):
            return report
    finally:
        if expired is not None:
            expired.unpersist()

    # Step 3: physical purge; step 4: audit.
    _purge(spark, config, store, report)
    if steps.done(3, "purge"):
        return report
    report.completed = True
    audit.append(spark, config.audit, _audit_record(report, config, hashes, "completed", cutoff))
    steps.done(4, "audit")
    return report


def _epoch_micros(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)
