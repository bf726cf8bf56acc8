"""What forget and purge-expired share: the report of an erasure, its audit records, the steps
it stops after (for crash tests), the deletes of derived rows and the physical purge."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession

from strm_spark.config.model import JobConfig
from strm_spark.errors import SubjectsError
from strm_spark.keys.store import KeyStore
from strm_spark.storage import erase as ops
from strm_spark.subjects import audit
from strm_spark.subjects._common import (
    _month_ranges,
)

log = logging.getLogger("strm_spark")


@dataclass
class ErasureReport:
    """What a forget or purge-expired did: counts only, never subject ids."""

    action: str
    audit_id: str
    audit_table: str
    subjects_requested: int = 0
    subjects_found: int = 0
    # 1-based positions, in the request, of ids no data subjects entry names (never the ids).
    not_found: list[int] = field(default_factory=list)
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
        if self.not_found:
            shown = ", ".join(str(p) for p in self.not_found[:20])
            more = f" and {len(self.not_found) - 20:,} more" if len(self.not_found) > 20 else ""
            lines.append(
                f"  NOT FOUND                     {len(self.not_found):,} id(s), at position(s) "
                f"{shown}{more} of the request: check them (nothing was erased for them)"
            )
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


def require_delta_outputs(config: JobConfig) -> None:
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


def derived_deletes(
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


def purge(spark: SparkSession, config: JobConfig, store: KeyStore, report: ErasureReport) -> None:
    """Step 3 on every table that may hold files a delete left behind: the ones this request
    deleted from, and any other with removals since its last VACUUM (a crashed earlier erasure,
    an overwrite by a job). A table with nothing pending is skipped: nothing to remove."""
    candidates = _purge_tables(spark, config, store)
    found = ops.in_parallel([lambda p=path: ops.pending_purge(spark, p) for _, path in candidates])
    tables = {t: p for t, p in zip(candidates, found) if p is not None}
    results = ops.purge(spark, {path: p for (_, path), p in tables.items()})
    for name, path in tables:
        counts = results[path]
        report.tables_purged[name] = {
            "files_rewritten": counts.files_rewritten,
            "files_removed": counts.files_removed,
        }
        report.files_rewritten += counts.files_rewritten
        report.files_removed += counts.files_removed


def audit_record(
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


class Steps:
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


def new_audit_id() -> str:
    import uuid

    return uuid.uuid4().hex
