"""Erasure: forget (crypto-shredding) and purge-expired, each recorded in the audit table.

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

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from strm_spark import private
from strm_spark.config.model import JobConfig
from strm_spark.delta import erase as ops
from strm_spark.delta.tables import sql_string
from strm_spark.errors import SubjectsError
from strm_spark.keys import tombstones
from strm_spark.keys.store import KeyStore
from strm_spark.pipeline import columns as cols
from strm_spark.subjects import audit
from strm_spark.subjects._common import (
    _data_subjects,
    _iso,
    _links_of,
    _month_ranges,
    _sql_str,
    _store,
    _subjects_df,
    log,
)
from strm_spark.subjects.quarantine import (
    _delete_quarantined,
    _delete_subject_rejected,
    _others_rows,
    _rejected_delete,
)


@dataclass
class ErasureReport:
    """What a forget or purge-expired did: counts only, never subject ids."""

    action: str
    audit_id: str
    audit_table: str
    subjects_requested: int = 0
    subjects_found: int = 0
    key_links: int = 0
    shared_key_links: int = 0
    other_subjects: int = 0
    other_subjects_rows_unreadable: int = 0
    tombstones: int = 0
    keys_removed: int = 0
    derived_rows_removed: dict[str, int] = field(default_factory=dict)
    rejected_rows_removed: int = 0
    quarantined_rows_removed: int = 0
    subject_entries_removed: int = 0
    files_rewritten: int = 0
    files_removed: int = 0
    tables_purged: dict[str, dict[str, int]] = field(default_factory=dict)
    expired_before: str | None = None
    completed: bool = False
    stopped_after_step: int | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def derived_total(self) -> int:
        return sum(self.derived_rows_removed.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def render(self) -> str:
        if self.action == "forget":
            head = (
                f"strm-spark forget: {self.subjects_requested:,} subject(s) requested, "
                f"{self.subjects_found:,} found, {self.key_links:,} key links"
            )
        else:
            head = (
                f"strm-spark purge-expired: keys expired before {self.expired_before}: "
                f"{self.key_links:,} key links, {self.subjects_found:,} subjects"
            )
        derived = ", ".join(f"{n} {c:,}" for n, c in self.derived_rows_removed.items()) or "none"
        lines = [
            head,
            f"  keys deleted                  {self.keys_removed:,}",
            f"  derived rows deleted          {self.derived_total:,} ({derived})",
            f"  rejected rows deleted         {self.rejected_rows_removed:,}"
            + (
                f" ({self.quarantined_rows_removed:,} under quarantine keys)"
                if self.quarantined_rows_removed
                else ""
            ),
            f"  data subject entries deleted  {self.subject_entries_removed:,}",
            f"  files rewritten (REORG PURGE) {self.files_rewritten:,}",
            f"  files removed (VACUUM)        {self.files_removed:,} in {len(self.tables_purged)} tables",
        ]
        if self.action == "forget":
            lines.append(
                f"  tombstones written            {self.tombstones:,} (later runs drop these subjects' "
                "events from before now)"
            )
        if self.completed:
            lines.append(f"  audit record                  {self.audit_id} in {self.audit_table}")
        else:
            lines.append(
                f"  STOPPED after step {self.stopped_after_step}: run the same command again to complete it"
            )
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in self.step_seconds.items())
        lines.append(f"  wall time                     {self.wall_time_s:.1f} s ({steps})")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


def _require_delta_outputs(config: JobConfig) -> None:
    """Rows can only be deleted from Delta tables: refuse before touching anything."""
    bad = [f"outputs.derived {d.name} ({d.format})" for d in config.derived if d.format != "delta"]
    if config.rejected.format != "delta":
        bad.append(f"outputs.rejected ({config.rejected.format})")
    if config.keys_export is not None:
        bad.append(f"the keys export {config.keys_export.path} (cleartext keysets in a CSV file)")
    if bad:
        raise SubjectsError(
            f"{config.config_path}: forget needs Delta outputs (rows can only be erased from Delta tables) and no "
            f"cleartext copies of keys; these are in the way: "
            f"{', '.join(bad)}. Nothing was changed."
        )


def _purge_tables(spark: SparkSession, config: JobConfig, store: KeyStore) -> list[tuple[str, str]]:
    """The tables step 3 purges (existing ones only); never the encrypted table."""
    tables = [("keys", store.keys_path)]
    tables += [(f"derived {d.name}", d.path) for d in config.derived]
    tables += [("rejected", config.rejected.path), ("data subjects", config.data_subjects.path)]
    return [(name, path) for name, path in tables if ops.is_delta(spark, path)]


def _derived_deletes(
    spark: SparkSession,
    config: JobConfig,
    links: DataFrame,
    days: list[date],
    undated: DataFrame | None,
    report: ErasureReport,
) -> list[Callable[[], None]]:
    """Deletes of derived rows whose strmMeta.keyLink is in `links`, pruned to the calendar
    months of the keys' days (strmDay, never the days themselves); links whose key (and so
    day) is already gone (a rerun after a crash) are matched
    over the whole table. One task per table, to run side by side."""

    def delete(name: str, path: str) -> None:
        removed = 0
        if ops.is_delta(spark, path):
            if days:
                removed += ops.merge_delete(
                    spark,
                    path,
                    links,
                    f"({_month_ranges(days)}) AND t.strmMeta.keyLink = s.keyLink",
                )
            if undated is not None:
                removed += ops.merge_delete(spark, path, undated, "t.strmMeta.keyLink = s.keyLink")
        report.derived_rows_removed[name] = removed

    for d in config.derived:
        report.derived_rows_removed.setdefault(d.name, 0)
    return [lambda d=d: delete(d.name, d.path) for d in config.derived]


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


def _purge(spark: SparkSession, config: JobConfig, store: KeyStore, report: ErasureReport) -> None:
    """Step 3 on every table that may hold files a delete left behind: the ones this request
    deleted from, and any other with removals since its last VACUUM (a crashed earlier erasure,
    an overwrite by a job). A table with nothing pending is skipped: nothing to remove."""
    tables = [
        (name, path)
        for name, path in _purge_tables(spark, config, store)
        if ops.needs_purge(spark, path)
    ]
    results = ops.purge(spark, [path for _, path in tables])
    for name, path in tables:
        counts = results[path]
        report.tables_purged[name] = {
            "files_rewritten": counts.files_rewritten,
            "files_removed": counts.files_removed,
        }
        report.files_rewritten += counts.files_rewritten
        report.files_removed += counts.files_removed


def _audit_record(
    report: ErasureReport,
    config: JobConfig,
    hashes: list[str],
    status: str,
    expired_before: datetime | None = None,
) -> audit.AuditRecord:
    done = status == "completed"
    return audit.AuditRecord(
        action=report.action,
        status=status,
        job=config.name,
        group_id=config.group_id,
        subject_hashes=hashes,
        audit_id=report.audit_id,
        keys_removed=report.keys_removed if done else None,
        derived_rows_removed=report.derived_total if done else None,
        rejected_rows_removed=report.rejected_rows_removed if done else None,
        subject_entries_removed=report.subject_entries_removed if done else None,
        files_rewritten=report.files_rewritten if done else None,
        files_removed=report.files_removed if done else None,
        expired_before=expired_before,
        details={
            "derived_rows_removed": report.derived_rows_removed,
            "tables_purged": report.tables_purged,
            "quarantined_rows_removed": report.quarantined_rows_removed,
            "key_links": report.key_links,
            "shared_key_links": report.shared_key_links,
            "other_subjects": report.other_subjects,
            "other_subjects_rows_unreadable": report.other_subjects_rows_unreadable,
        }
        if done
        else None,
    )


class _Steps:
    """Times the steps of an erasure and stops after a given one (to test crash recovery)."""

    def __init__(self, report: ErasureReport, stop_after: int | None) -> None:
        self.report, self.stop_after = report, stop_after
        self.start = self.last = time.monotonic()

    def done(self, step: int, name: str) -> bool:
        now = time.monotonic()
        self.report.step_seconds[f"{step} {name}"] = round(now - self.last, 2)
        self.report.wall_time_s = round(now - self.start, 2)
        self.last = now
        log.info("%s step %d (%s) done", self.report.action, step, name)
        if self.stop_after is not None and step >= self.stop_after:
            self.report.stopped_after_step = step
            return True
        return False


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
        private.seal(private.job_locations(config))


def _forget(
    spark: SparkSession, config: JobConfig, subjects: Sequence[str], stop_after_step: int | None
) -> ErasureReport:
    _require_delta_outputs(config)
    subjects = sorted({s for s in subjects if s is not None})
    # The master key (if any) opens quarantine keysets in step 2; check it before anything changes.
    store = _store(spark, config, need_master=True)
    report = ErasureReport(
        "forget",
        audit_id=_new_audit_id(),
        audit_table=config.audit,
        subjects_requested=len(subjects),
    )
    hashes = audit.subject_hashes(store.audit_key(config.group_id), subjects)
    audit.append(spark, config.audit, _audit_record(report, config, hashes, "started"))
    # Tombstones first: a job running from now on drops the subjects' earlier events, also
    # from re-delivered files, and a crashed forget has already left them.
    report.tombstones = tombstones.add(
        spark, config.key_store, config.group_id, hashes, datetime.now(UTC)
    )
    steps = _Steps(report, stop_after_step)

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
    if shared and store.exists():
        # Before the keys go: the other subjects' rows they make unreadable are counted, and
        # this subject's rejected rows under them are found by decrypting (a rerun after a
        # crash in step 1 or later finds none left).
        shared_keys = (
            store.keysets(
                spark.createDataFrame([(k,) for k in shared], "keyLink string"), cleartext=True
            )
            .where(F.col("kind") == "row")
            .select(F.col("keyLink").alias(cols.KEY_LINK), F.col("keyset").alias(cols.KEYSET))
        )
        report.other_subjects_rows_unreadable = _others_rows(
            spark, config, shared_keys, subjects, sorted({dated[k] for k in shared if k in dated})
        )
        removed = _delete_subject_rejected(spark, config, shared_keys, subjects)
        report.rejected_rows_removed += removed
        report.notes.append(
            f"{report.shared_key_links:,} key links also cover {report.other_subjects:,} other subjects (the key "
            f"field is not the subject field): {report.other_subjects_rows_unreadable:,} of their encrypted and "
            "rejected rows can no longer be decrypted, and derived rows under those keys were deleted; their "
            "data subject entries stay, with key_present false"
        )

    # Step 1: the keys (row keys only; quarantine keys are never linked to a subject).
    if link_list and store.exists():
        report.keys_removed = ops.merge_delete(
            spark, store.keys_path, links, "t.keyLink = s.keyLink AND t.kind = 'row'"
        )
    if steps.done(1, "keys"):
        return report

    # Step 2: derived and rejected rows (each table its own task, side by side), then the data
    # subjects entries.
    tasks: list[Callable[[], None]] = []
    if link_list:
        days = sorted(set(dated.values()))
        dated_links = spark.createDataFrame([(k,) for k in sorted(dated)], "keyLink string")
        undated = [k for k in link_list if k not in dated]
        undated_df = (
            spark.createDataFrame([(k,) for k in undated], "keyLink string") if undated else None
        )
        tasks += _derived_deletes(spark, config, dated_links, days, undated_df, report)
    else:
        report.derived_rows_removed = {d.name: 0 for d in config.derived}
    own = [k for k in link_list if k not in set(shared)]
    own_df = spark.createDataFrame([(k,) for k in own], "keyLink string") if own else None
    tasks.append(lambda: _delete_quarantined(spark, config, store, subjects, report, own_df))
    ops.in_parallel(tasks)
    if link_list and ds is not None:
        # The subjects' own entries only: other subjects sharing a key link keep theirs.
        mine = spark.createDataFrame(sorted(entries), "dataSubject string, keyLink string")
        report.subject_entries_removed = ops.merge_delete(
            spark,
            config.data_subjects.path,
            mine,
            f"t.keyLink = s.keyLink AND t.dataSubject = s.dataSubject AND t.groupId = '{_sql_str(config.group_id)}'",
        )
    if steps.done(2, "rows"):
        return report

    # Step 3: physical purge, also when nothing was deleted now (a rerun after a crash finds
    # nothing left to delete but may still have files to remove).
    _purge(spark, config, store, report)
    if steps.done(3, "purge"):
        return report

    # Step 4: the audit record.
    report.completed = True
    audit.append(spark, config.audit, _audit_record(report, config, hashes, "completed"))
    steps.done(4, "audit")
    return report


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
    store = KeyStore(spark, config.key_store)
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


def _new_audit_id() -> str:
    import uuid

    return uuid.uuid4().hex


def _epoch_micros(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)
