"""Purge-expired: keys past their retention destroyed, their rows deleted, the tables purged."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from strm_spark.config.model import JobConfig
from strm_spark.keys.store import KeyStore
from strm_spark.storage import erase as ops
from strm_spark.storage.tables import seal, sql_string
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
    Steps,
    audit_record,
    derived_deletes,
    new_audit_id,
    purge,
    require_delta_outputs,
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
        seal(spark, config.written_locations())


def _purge_expired(
    spark: SparkSession, config: JobConfig, now: datetime | None, stop_after_step: int | None
) -> ErasureReport:
    """Delete and physically purge the group's keys whose expiresAt is at or before `now`
    (default: the current time), with the data subjects entries, derived rows and rejected
    rows of their key links; audit record as for forget.

    The key store is changed last (rows first, then keys): the expired keys are how a rerun
    after a crash finds the links whose rows are still to be deleted."""
    require_delta_outputs(config)
    cutoff = _utc(now or datetime.now(UTC))
    cutoff_col = F.timestamp_micros(F.lit(_epoch_micros(cutoff)))
    store = KeyStore.for_job(spark, config, with_master=False)
    report = ErasureReport(
        "purge-expired",
        audit_id=new_audit_id(),
        audit_table=config.audit,
        expired_before=_iso(cutoff),
    )
    audit.append(spark, config.audit, audit_record(report, config, [], "started", cutoff))
    steps = Steps(report, stop_after_step)
    expired, days, held = _expired_keys(store, config, cutoff_col, report)
    # SQL: a group id, a cut-off time and the retention, no personal data (Delta keeps it in
    # commitInfo). Keys whose day is newer than the configured retention allows are held back.
    expired_in_group = (
        f"groupId = {sql_string(config.group_id)} "
        f"AND expiresAt <= timestamp_micros({_epoch_micros(cutoff)})"
    )
    keys_in_group = f"{expired_in_group} AND {_DUE.format(retention=int(config.retention_days))}"
    try:
        # Step 1: rows of the expired links: derived, rejected, then the data subjects entries
        # (an entry carries its key's expiresAt, so a cut-off finds them without the keys).
        if expired is not None and report.key_links:
            _delete_expired_rows(spark, config, expired, days, report)
        else:
            report.derived_rows_removed = {d.name: 0 for d in config.derived}
        # Entries of held-back keys stay: then the entries go by the due keys' links.
        due_links = expired.select("keyLink") if held and expired is not None else None
        hashes = _expired_subjects(
            spark, config, store, cutoff_col, expired_in_group, due_links, report
        )
        if steps.done(1, "rows"):
            return report
        # Step 2: the expired keys.
        if expired is not None and report.key_links:
            report.keys_removed = ops.delete_where(spark, store.keys_path, keys_in_group)
        if steps.done(2, "keys"):
            return report
    finally:
        if expired is not None:
            expired.unpersist()

    # Step 3: physical purge; step 4: audit.
    purge(spark, config, store, report)
    if steps.done(3, "purge"):
        return report
    report.completed = True
    audit.append(spark, config.audit, audit_record(report, config, hashes, "completed", cutoff))
    steps.done(4, "audit")
    return report


# A key is due when its day (quarantine keys have none) allows its expiry under the configured
# retention: the day's end plus `retention` days is not after its expiresAt. A key whose
# expiry comes earlier than its day allows (set under a shorter retention, or written by
# hand) is held back, so a wrong expiry destroys nothing.
_DUE = "(day IS NULL OR timestamp_seconds((unix_date(day) + 1 + {retention}) * 86400) <= expiresAt)"


def _utc(when: datetime) -> datetime:
    """`when` in UTC; a naive time is taken as UTC."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def _expired_keys(
    store: KeyStore, config: JobConfig, cutoff_col: Column, report: ErasureReport
) -> tuple[DataFrame | None, list[date]]:
    """The group's expired keys (keyLink, day, kind; persisted: the caller unpersists) and their
    days; counted in the report."""
    if not store.exists():
        return None, [], 0
    due = F.expr(_DUE.format(retention=int(config.retention_days)))
    expired = (
        store.keys(config.group_id)
        .where(F.col("expiresAt") <= cutoff_col)
        .select("keyLink", "day", "kind", due.alias("due"))
        .persist()
    )
    summary = expired.agg(
        F.count_if("due").alias("n"),
        F.count_if(~F.col("due")).alias("held"),
        F.collect_set(F.when(F.col("due"), F.col("day"))).alias("days"),
    ).first()
    report.key_links = int(summary["n"])
    if summary["held"]:
        report.notes.append(
            f"{summary['held']:,} expired keys were NOT purged: their days are newer than "
            f"keys.retention_days ({config.retention_days:,}) allows for their expiry (an "
            "expiry set under another retention, or rows put on the wrong day); raise nothing "
            "by hand: check the job's timestamp pattern and retention, then run again"
        )
    days = sorted(d for d in summary["days"] if d is not None)
    return expired.where("due").drop("due"), days, int(summary["held"])


def _delete_expired_rows(
    spark: SparkSession,
    config: JobConfig,
    expired: DataFrame,
    days: list[date],
    report: ErasureReport,
) -> None:
    """The derived and rejected rows of the expired key links, each table its own task."""
    tasks = derived_deletes(
        spark, config, expired.where(F.col("kind") == "row").select("keyLink"), days, None, report
    )
    rejected: list[int] = []
    tasks.append(
        lambda: rejected.append(_rejected_delete(spark, config, expired.select("keyLink"), report))
    )
    ops.in_parallel(tasks)
    report.rejected_rows_removed += sum(rejected)


def _expired_subjects(
    spark: SparkSession,
    config: JobConfig,
    store: KeyStore,
    cutoff_col: Column,
    expired_in_group: str,
    due_links: DataFrame | None,
    report: ErasureReport,
) -> list[str]:
    """Delete the data subjects entries of expired keys (only those of `due_links` when some
    keys were held back); the keyed hashes of their subjects, for the audit record."""
    ds = _data_subjects(spark, config)
    if ds is None:
        return []
    entries = ds.where(F.col("expiresAt") <= cutoff_col)
    if due_links is not None:
        entries = entries.join(due_links, "keyLink", "left_semi")
    subjects = [r["dataSubject"] for r in entries.select("dataSubject").distinct().collect()]
    report.subjects_found = len(subjects)
    hashes = audit.subject_hashes(store.audit_key(config.group_id), subjects)
    if subjects and due_links is not None:
        report.subject_entries_removed = ops.merge_delete(
            spark,
            config.data_subjects.path,
            due_links,
            f"{expired_in_group} AND t.keyLink = s.keyLink",
        )
    elif subjects:
        report.subject_entries_removed = ops.delete_where(
            spark, config.data_subjects.path, expired_in_group
        )
    return hashes


def _epoch_micros(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)
