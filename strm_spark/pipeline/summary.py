"""Stage 7, summary: what a run did, its progress lines, and its record in the job's table of
runs (`<summary_dir>/runs`, a Delta table users can query)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from strm_spark.config.model import JobConfig
from strm_spark.errors import DataError
from strm_spark.storage.sinks import write

log = logging.getLogger("strm_spark")

RUNS_SCHEMA = T.StructType(
    [
        T.StructField("job", T.StringType(), False),
        T.StructField("runId", T.StringType(), False),
        T.StructField("startedAt", T.TimestampType(), False),
        T.StructField("wallTimeS", T.DoubleType(), False),
        T.StructField("rowsRead", T.LongType(), False),
        T.StructField("rowsEncrypted", T.LongType(), False),
        T.StructField("rowsRejected", T.LongType(), False),
        T.StructField("keysCreated", T.LongType(), False),
        T.StructField("keysReused", T.LongType(), False),
        T.StructField("summary", T.StringType(), False),  # the whole RunSummary as JSON
    ]
)


@dataclass
class RunSummary:
    """What a run did; printed at the end and kept as a row of the job's table of runs."""

    job: str
    run_id: str
    started_at: str
    source: str
    batch: dict[str, object] | None = None  # incremental runs: id, files, resumed, mode
    rows_read: int = 0
    rows_encrypted: int = 0
    rows_rejected: int = 0
    rows_tombstoned: int = 0  # rows of forgotten subjects from before their forget: dropped
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    keys_needed: int = 0
    keys_created: int = 0
    keys_reused: int = 0
    quarantine_key: bool = False
    key_store: str = ""  # the store's form: key hierarchy, or keysets wrapped directly
    derived_rows: dict[str, int] = field(default_factory=dict)
    data_subject_links_added: int = 0
    engine: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0
    rows_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def render(self) -> str:
        lines = [
            f"strm-spark run summary: job {self.job} (run {self.run_id})",
            f"  source            {self.source}",
        ]
        if self.batch is not None and "stream" in self.batch:
            lines.append(f"  micro-batch       {self.batch['id']} of stream {self.batch['stream']}")
        elif self.batch is not None:
            lines.append(
                f"  batch             {self.batch['id']}: {self.batch['files']:,} new file(s)"
                + (" (resumed after an unfinished run)" if self.batch["resumed"] else "")
                + (
                    " (reprocessing every file, outputs overwritten)"
                    if self.batch["mode"] == "overwrite"
                    else ""
                )
            )
        lines += [
            f"  rows read         {self.rows_read:,}",
            f"  rows encrypted    {self.rows_encrypted:,}",
            f"  rows rejected     {self.rows_rejected:,}",
        ]
        for reason, count in sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"      {count:>9,}  {reason}")
        if self.rows_tombstoned:
            lines.append(
                f"  rows dropped      {self.rows_tombstoned:,} (subjects forgotten after these events)"
            )
        lines += [
            f"  keys              {self.keys_needed:,} used: {self.keys_created:,} created, "
            f"{self.keys_reused:,} reused"
            + (" (+1 quarantine key)" if self.quarantine_key else ""),
            f"  data subject links added {self.data_subject_links_added:,}",
        ]
        if self.key_store:
            lines.append(f"  key store         {self.key_store}")
        for name, count in self.derived_rows.items():
            lines.append(f"  derived {name:<10} {count:,} rows")
        if self.engine:
            lines.append(f"  encryption        {self.engine}")
        lines.append(
            f"  wall time         {self.wall_time_s:.1f} s ({self.rows_per_s:,.0f} rows/s)"
        )
        lines.append("  outputs:")
        for name, path in self.outputs.items():
            lines.append(f"    {name:<22} {path}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


class Progress:
    """One log line per stage, with the seconds the stage took."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.last = time.monotonic()

    def __call__(self, step: int, message: str, *args: object) -> None:
        now = time.monotonic()
        log.info(f"[{step}/{self.total}] {message} (%.1f s)", *args, now - self.last)
        self.last = now


def runs_path(config: JobConfig) -> str:
    return config.summary_table("runs")


def finish(
    spark: SparkSession,
    config: JobConfig,
    summary: RunSummary,
    started: float,
    txn: tuple[str, int] | None = None,
) -> RunSummary:
    """Close the summary (wall time, rate) and append it to the job's table of runs (once per
    `txn`: a stream's replayed micro-batch adds no second row)."""
    summary.wall_time_s = round(time.monotonic() - started, 2)
    summary.rows_per_s = (
        round(summary.rows_read / summary.wall_time_s, 1) if summary.wall_time_s else 0.0
    )
    summary.outputs["run summary"] = runs_path(config)
    row = (
        summary.job,
        summary.run_id,
        datetime.fromisoformat(summary.started_at).astimezone(UTC),
        float(summary.wall_time_s),
        summary.rows_read,
        summary.rows_encrypted,
        summary.rows_rejected,
        summary.keys_created,
        summary.keys_reused,
        summary.to_json(),
    )
    write(
        spark.createDataFrame([row], RUNS_SCHEMA),
        runs_path(config),
        "append",
        stats_columns="job,runId,startedAt",
        txn=txn,
    )
    return summary


def check_rejected_fraction(config: JobConfig, summary: RunSummary) -> None:
    """Fail the run, before anything is committed, when too many rows are rejected."""
    limit = config.max_rejected_fraction
    if limit is None or not summary.rows_read:
        return
    fraction = summary.rows_rejected / summary.rows_read
    if fraction > limit:
        reasons = "; ".join(
            f"{n:,} {r}"
            for r, n in sorted(summary.rejected_by_reason.items(), key=lambda kv: -kv[1])[:5]
        )
        raise DataError(
            f"{config.source.path}: {summary.rows_rejected:,} of {summary.rows_read:,} rows rejected "
            f"({fraction:.1%}), above max_rejected_fraction {limit:g}; nothing was written. "
            f"Reasons: {reasons}"
        )
