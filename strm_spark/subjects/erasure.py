"""Forget: a data subject erased by crypto-shredding, recorded in the audit table.

Forget runs four idempotent steps, in this order, so that a crash and a rerun complete it:
1. delete the subjects' keys from the key store (their encrypted rows become unreadable);
2. delete the rows of those key links from every derived table and the rejected table, and the
subjects' rejected rows under quarantine keys (found by decrypting them; the shared keys stay),
then the subjects' entries in the data subjects table (last: they are how a rerun finds the
links);
3. physically purge the key store, derived, rejected and data subjects tables that have anything
to purge: REORG ... APPLY (PURGE) where deletion vectors are on, then VACUUM with zero
retention. The encrypted table is never touched: without the keys its ciphertext is useless,
and it keeps its time travel;
4. append an audit record (keyed hashes of the subject ids, never the ids, and the counts).
Subject ids never appear in logs, reports or Delta predicates (deletes are MERGEs against a
small source DataFrame, so no value is written into `_delta_log`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from strm_spark import columns as cols
from strm_spark.config.model import JobConfig
from strm_spark.keys import tombstones
from strm_spark.keys.store import KeyStore
from strm_spark.storage import erase as ops
from strm_spark.storage.tables import seal
from strm_spark.subjects import audit
from strm_spark.subjects._common import (
    _data_subjects,
    _links_of,
    _sql_str,
    _store,
    _subjects_df,
)
from strm_spark.subjects.quarantine import (
    _delete_quarantined,
    _delete_subject_rejected,
    _others_rows,
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


def _shared_links(
    spark: SparkSession,
    config: JobConfig,
    ds: DataFrame,
    links: DataFrame,
    subjects: Sequence[str],
    report: ErasureReport,
) -> list[str]:
    """The key links of `links` that other subjects than `subjects` have entries under too. A
    key link covers one key-field value, so only when that is not the subject field can it."""
    if config.contract.key_field == config.contract.data_subject_field:
        return []
    others = (
        ds.join(F.broadcast(links), "keyLink")
        .join(F.broadcast(_subjects_df(spark, subjects)), "dataSubject", "left_anti")
        .select("dataSubject", "keyLink")
        .distinct()
        .collect()
    )
    shared = sorted({r["keyLink"] for r in others})
    report.shared_key_links, report.other_subjects = (
        len(shared),
        len({r["dataSubject"] for r in others}),
    )
    return shared


def forget(
    spark: SparkSession,
    config: JobConfig,
    subjects: Sequence[str],
    *,
    stop_after_step: int | None = None,
) -> ErasureReport:
    """The erasure request for `subjects` (see the module docstring for the four steps).

    Idempotent: rerunning after a crash at any point completes the erasure. A subject that
    does not exist counts 0. `stop_after_step` (1-3) stops early, as a crash would (for tests).
    Files the erasure rewrites stay owner-only on a local file system."""
    try:
        return _forget(spark, config, subjects, stop_after_step)
    finally:
        seal(spark, config.written_locations())


def _forget(
    spark: SparkSession, config: JobConfig, subjects: Sequence[str], stop_after_step: int | None
) -> ErasureReport:
    require_delta_outputs(config)
    requested = list(subjects)
    subjects = sorted({s for s in subjects if s is not None})
    # The master key (if any) opens quarantine keysets in step 2; check it before anything changes.
    store = _store(spark, config, need_master=True)
    report = ErasureReport(
        "forget",
        audit_id=new_audit_id(),
        audit_table=config.audit,
        subjects_requested=len(subjects),
    )
    hashes = audit.subject_hashes(store.audit_key(config.group_id), subjects)
    audit.append(spark, config.audit, audit_record(report, config, hashes, "started"))
    # Tombstones first: a job running from now on drops the subjects' earlier events, also
    # from re-delivered files, and a crashed forget has already left them.
    report.tombstones = tombstones.add(
        spark, config.key_store, config.group_id, hashes, datetime.now(UTC)
    )
    steps = Steps(report, stop_after_step)
    found = _locate(spark, config, store, subjects, report)
    named = {s for s, _ in found.entries}
    report.not_found = [i for i, s in enumerate(requested, 1) if s not in named]
    if found.shared and store.exists():
        _before_shared_keys_go(found)

    # Step 1: the keys (row keys only; quarantine keys are never linked to a subject).
    if found.link_list and store.exists():
        report.keys_removed = ops.merge_delete(
            spark, store.keys_path, found.links, "t.keyLink = s.keyLink AND t.kind = 'row'"
        )
    if steps.done(1, "keys"):
        return report
    # Step 2: derived and rejected rows, then the data subjects entries.
    _delete_rows(found)
    if steps.done(2, "rows"):
        return report
    # Step 3: physical purge, also when nothing was deleted now (a rerun after a crash finds
    # nothing left to delete but may still have files to remove).
    purge(spark, config, store, report)
    if steps.done(3, "purge"):
        return report
    # Step 4: the audit record.
    report.completed = True
    audit.append(spark, config.audit, audit_record(report, config, hashes, "completed"))
    steps.done(4, "audit")
    return report


@dataclass
class _Found:
    """What a forget acts on: its request (session, config, store, subjects, report), the
    subjects' (subject, key link) entries, their links (as a list and a DataFrame), the days of
    the links whose key is stored, the data subjects table, and the links others share."""

    spark: SparkSession
    config: JobConfig
    store: KeyStore
    subjects: list[str]
    report: ErasureReport
    entries: list[tuple[str, str]]
    link_list: list[str]
    links: DataFrame
    dated: dict[str, date]
    ds: DataFrame | None
    shared: list[str]


def _locate(
    spark: SparkSession,
    config: JobConfig,
    store: KeyStore,
    subjects: list[str],
    report: ErasureReport,
) -> _Found:
    entries = _links_of(spark, config, subjects)
    link_list = sorted({link for _, link in entries})
    report.subjects_found = len({s for s, _ in entries})
    report.key_links = len(link_list)
    links = spark.createDataFrame([(k,) for k in link_list], "keyLink string")
    # Days of the links whose key is still stored; the others are only known by their link.
    dated: dict[str, date] = {}
    if link_list and store.exists():
        dated = {
            r["keyLink"]: r["day"]
            for r in store.keysets(links)
            .where(F.col("kind") == "row")
            .select("keyLink", "day")
            .collect()
        }
    ds = _data_subjects(spark, config)
    shared = (
        _shared_links(spark, config, ds, links, subjects, report)
        if link_list and ds is not None
        else []
    )
    return _Found(
        spark, config, store, subjects, report, entries, link_list, links, dated, ds, shared
    )


def _before_shared_keys_go(found: _Found) -> None:
    """Before the keys go: the other subjects' rows they make unreadable are counted, and this
    subject's rejected rows under them are found by decrypting (a rerun after a crash in step 1
    or later finds none left)."""
    shared_keys = (
        found.store.keysets(
            found.spark.createDataFrame([(k,) for k in found.shared], "keyLink string"),
            cleartext=True,
        )
        .where(F.col("kind") == "row")
        .select(F.col("keyLink").alias(cols.KEY_LINK), F.col("keyset").alias(cols.KEYSET))
    )
    days = sorted({found.dated[k] for k in found.shared if k in found.dated})
    found.report.other_subjects_rows_unreadable = _others_rows(
        found.spark, found.config, shared_keys, found.subjects, days
    )
    found.report.rejected_rows_removed += _delete_subject_rejected(
        found.spark, found.config, shared_keys, found.subjects
    )
    found.report.notes.append(
        f"{found.report.shared_key_links:,} key links also cover {found.report.other_subjects:,} other subjects (the key "
        f"field is not the subject field): {found.report.other_subjects_rows_unreadable:,} of their encrypted and "
        "rejected rows can no longer be decrypted, and derived rows under those keys were deleted; their "
        "data subject entries stay, with key_present false"
    )


def _delete_rows(found: _Found) -> None:
    """Step 2: derived and rejected rows (each table its own task, side by side), then the data
    subjects entries."""
    tasks: list[Callable[[], None]] = []
    if found.link_list:
        days = sorted(set(found.dated.values()))
        dated_links = found.spark.createDataFrame(
            [(k,) for k in sorted(found.dated)], "keyLink string"
        )
        undated = [k for k in found.link_list if k not in found.dated]
        undated_df = (
            found.spark.createDataFrame([(k,) for k in undated], "keyLink string")
            if undated
            else None
        )
        tasks += derived_deletes(
            found.spark, found.config, dated_links, days, undated_df, found.report
        )
    else:
        found.report.derived_rows_removed = {d.name: 0 for d in found.config.derived}
    own = [k for k in found.link_list if k not in set(found.shared)]
    own_df = found.spark.createDataFrame([(k,) for k in own], "keyLink string") if own else None
    tasks.append(
        lambda: _delete_quarantined(
            found.spark, found.config, found.store, found.subjects, found.report, own_df
        )
    )
    ops.in_parallel(tasks)
    if found.link_list and found.ds is not None:
        # The subjects' own entries only: other subjects sharing a key link keep theirs.
        mine = found.spark.createDataFrame(
            sorted(found.entries), "dataSubject string, keyLink string"
        )
        found.report.subject_entries_removed = ops.merge_delete(
            found.spark,
            found.config.data_subjects.path,
            mine,
            f"t.keyLink = s.keyLink AND t.dataSubject = s.dataSubject AND t.groupId = '{_sql_str(found.config.group_id)}'",
        )
