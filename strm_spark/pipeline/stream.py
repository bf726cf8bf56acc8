"""`strm-spark stream`: the job as a Structured Streaming query, each micro-batch a batch.

The source is a streaming DataFrame (`read.stream_source`): files, a Kafka topic or a Delta
table. `foreachBatch` runs the batch pipeline on each micro-batch (`run.run_micro_batch`):

- a file source's micro-batch holds its new files' rows, read by the batch run's reader (the
  same options, rejected-row rules and row numbers);
- a Kafka micro-batch's values are parsed per the contract (JSON or CSV), a Delta table's rows
  taken as they are.

Exactly once: Spark's checkpoint replays a micro-batch the process did not finish with the same
batch id and the same input. Each Delta output (and the table of runs) is written with Delta's
idempotent-write options, `txnAppId` = `strm-spark:<job>:<stream id>` and `txnVersion` = the
batch id, so a replay skips what was committed; keys and data subjects are insert-only MERGEs.

The checkpoint is the job's own (`checkpoint.claim_checkpoint`). A job that ran incrementally
(`source.incremental`, its file log) is handed over: the stream skips the files the log holds,
and an incremental `run` of the job is refused from then on.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from strm_spark import errors
from strm_spark.columns import BLOCK, FILE
from strm_spark.config import preflight
from strm_spark.config.model import JobConfig
from strm_spark.errors import StrmSparkError, UsageError
from strm_spark.pipeline.checkpoint import checkpoint_of, claim_checkpoint
from strm_spark.pipeline.incremental import FileLog
from strm_spark.pipeline.read import contract_fields, kafka_rows, stream_source, with_row_ids
from strm_spark.pipeline.run import MicroBatch, run_micro_batch
from strm_spark.pipeline.summary import runs_path
from strm_spark.storage.tables import owner_only, read

log = logging.getLogger("strm_spark")


@dataclass(frozen=True)
class StreamOptions:
    """How the query runs: `available_now` (process what is there, then stop) or a trigger
    `interval` ("30s"); a file source's `max_files_per_trigger`; `timeout_s` stops a
    long-running query (None: until it is stopped)."""

    available_now: bool = True
    interval: str | None = None
    max_files_per_trigger: int | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not self.available_now:
            _interval(self.interval)  # a bad interval fails here, before Spark starts
        if self.max_files_per_trigger is not None and self.max_files_per_trigger < 1:
            raise UsageError("--max-files-per-trigger: expected a number of files, 1 or more")


@dataclass
class StreamSummary:
    """What a stream did, over all of its micro-batches of this start (each one a row of the
    table of runs)."""

    job: str
    stream_id: str
    checkpoint: str
    trigger: str
    started_at: str
    micro_batches: int = 0
    rows_read: int = 0
    rows_encrypted: int = 0
    rows_rejected: int = 0
    rows_tombstoned: int = 0
    keys_created: int = 0
    keys_reused: int = 0
    wall_time_s: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        rate = self.rows_read / self.wall_time_s if self.wall_time_s else 0.0
        lines = [
            f"strm-spark stream summary: job {self.job} (stream {self.stream_id})",
            f"  trigger           {self.trigger}",
            f"  checkpoint        {self.checkpoint}",
            f"  micro-batches     {self.micro_batches:,}",
            f"  rows read         {self.rows_read:,}",
            f"  rows encrypted    {self.rows_encrypted:,}",
            f"  rows rejected     {self.rows_rejected:,}",
        ]
        if self.rows_tombstoned:
            lines.append(
                f"  rows dropped      {self.rows_tombstoned:,} (subjects forgotten after these events)"
            )
        lines += [
            f"  keys              {self.keys_created:,} created, {self.keys_reused:,} reused",
            f"  wall time         {self.wall_time_s:.1f} s ({rate:,.0f} rows/s)",
            "  outputs:",
        ]
        lines += [f"    {name:<22} {path}" for name, path in self.outputs.items()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def delta_rows(df: DataFrame, config: JobConfig) -> DataFrame:
    """A Delta source's micro-batch as `read_source`'s rows: the contract's fields, typed."""
    return with_row_ids(
        contract_fields(df, config.source, config.contract).select(
            "*", F.lit(str(config.source.path)).alias(FILE), F.lit(0).cast("long").alias(BLOCK)
        )
    )


class _EachBatch:
    """The function `foreachBatch` calls: a micro-batch run as a batch. A class with its state
    in plain fields, so that Spark Connect pickles it to the server's Python worker.
    `skip`: files incremental runs of the job processed before it was streamed."""

    def __init__(
        self, config: JobConfig, stream_id: str, engine: str, skip: tuple[str, ...] = ()
    ) -> None:
        self.config, self.stream_id, self.engine, self.skip = config, stream_id, engine, skip

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        config = self.config
        micro = dict(
            batch_id=batch_id,
            run_id=f"{self.stream_id}-{batch_id}",
            txn=(f"strm-spark:{config.name}:{self.stream_id}", batch_id),
        )
        if config.source.kafka is not None:
            rows = kafka_rows(df, config.source.kafka, config.contract, config.source.delimiter)
        elif config.source.is_files:  # read and located by the stream, as a batch reads files
            rows = with_row_ids(df)
            if self.skip:
                rows = rows.where(~F.col(FILE).isin(list(self.skip)))
        else:
            rows = delta_rows(df, config)
        batch = MicroBatch(**micro, rows=rows)
        run_micro_batch(df.sparkSession, config, batch, self.engine)


def run_stream(
    spark: SparkSession,
    config: JobConfig,
    options: StreamOptions = StreamOptions(),
    *,
    engine: str = "auto",
    strict: bool = False,
) -> StreamSummary:
    """Run the job as a streaming query until it ends (`available_now`) or is stopped."""
    if config.write_mode != "append":
        raise UsageError(f"job {config.name}: a stream appends; set outputs.mode: append")
    not_delta = [
        o for o in (config.encrypted, config.rejected, *config.derived) if o.format != "delta"
    ]
    if not_delta:
        raise UsageError(
            f"job {config.name}: a stream writes Delta tables only (exactly once); "
            f"{not_delta[0].path} is {not_delta[0].format}"
        )
    interval = _interval(options.interval) if not options.available_now else None
    preflight.check_job(config, java_regexes=False, strict=strict)
    preflight.check_on_session(spark, config)
    checkpoint = checkpoint_of(config)
    stream_id = claim_checkpoint(spark, checkpoint, config.name)
    # A job that ran incrementally: the stream starts after the files its runs processed.
    handed_over = (
        FileLog(spark, config.summary_table("files"), config.name).handover()
        if config.source.is_files
        else ()
    )
    started, started_at = time.monotonic(), datetime.now(UTC)
    trigger = "available now" if options.available_now else f"every {options.interval}"
    out = StreamSummary(
        config.name, stream_id, str(checkpoint), trigger, started_at.isoformat(timespec="seconds")
    )
    with owner_only(spark, config.written_locations()):
        source = stream_source(spark, config.source, config.contract, options.max_files_per_trigger)
        writer = (
            source.writeStream.foreachBatch(_EachBatch(config, stream_id, engine, handed_over))
            .option("checkpointLocation", str(checkpoint))
            .queryName(f"strm-spark-{config.name}-{stream_id}")
        )
        writer = (
            writer.trigger(availableNow=True)
            if options.available_now
            else writer.trigger(processingTime=interval)
        )
        log.info("stream %s of job %s started (%s)", stream_id, config.name, trigger)
        query = writer.start()
        stopped = _await(query, options.timeout_s)
    _fill(spark, config, out, started_at)
    out.wall_time_s = round(time.monotonic() - started, 2)
    out.outputs = {
        "encrypted": config.encrypted.path,
        **{f"derived {d.name}": d.path for d in config.derived},
        "rejected": config.rejected.path,
        "data subjects": config.data_subjects.path,
        "keys": str(config.key_store),
        "run summary": runs_path(config),
    }
    if stopped:
        out.notes.append(stopped)
    if not out.micro_batches:
        out.notes.append("nothing new in the source: no micro-batch ran")
    return out


_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours"}


def _interval(text: str | None) -> str:
    """A trigger interval as written (`30s`, `500ms`, `5m`, `1h`, `2 minutes`) in Spark's
    words ("30 seconds")."""
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|milliseconds?|seconds?|minutes?|hours?)\s*", text or "")
    if not m or int(m[1]) == 0:
        raise UsageError(
            f"--trigger-interval {text!r}: expected a duration like 30s, 500ms, 5m or 1h"
        )
    unit = _UNITS.get(m[2], m[2].rstrip("s") + "s")
    return f"{int(m[1])} {unit}"


def _await(query, timeout_s: float | None) -> str | None:
    """Wait for the query, logging each micro-batch's progress; stop it after `timeout_s` or
    on Ctrl-C (a micro-batch it interrupts is replayed by the next start), and say so. A
    failed micro-batch fails the query: its strm-spark error is raised as itself."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    seen = None
    try:
        while True:
            done = query.awaitTermination(5)
            progress = query.lastProgress
            if progress and progress.get("batchId") != seen and progress.get("numInputRows"):
                seen = progress.get("batchId")
                took = (progress.get("durationMs") or {}).get("triggerExecution", 0) / 1000
                log.info("micro-batch %s done (%.1f s)", seen, took)
            if done:
                return
            if deadline is not None and time.monotonic() > deadline:
                query.stop()
                return f"stopped after --timeout {timeout_s:g} s"
    except KeyboardInterrupt:
        query.stop()
        return "stopped by Ctrl-C; the next start goes on from the checkpoint"
    except Exception as exc:
        raise _as_strm_error(exc) from None


# How a strm-spark error raised in foreachBatch reads inside Spark's StreamingQueryException.
_RAISED = re.compile(r"(?:strm_spark\.errors\.)?(?P<cls>[A-Z][A-Za-z]*Error): (?P<msg>[^\n]+)")


class KafkaUnavailable(Exception):
    """The Kafka source failed (a broker down, a topic missing or without a leader yet): nothing
    of the failed micro-batch was committed; the next start goes on from the checkpoint."""


_KAFKA_ERROR = re.compile(r"org\.apache\.kafka\.common\.errors\.(\w+Exception)")


def _as_strm_error(exc: Exception) -> Exception:
    """The strm-spark error a micro-batch raised, as itself (its message names files, fields and
    rules, never values); a Kafka client's error by its class; any other failure as it is."""
    for m in _RAISED.finditer(str(exc)):
        cls = getattr(errors, m["cls"], None)
        if (
            isinstance(cls, type)
            and issubclass(cls, StrmSparkError)
            and cls.__init__ is Exception.__init__
        ):
            return cls(m["msg"].strip())
        if cls is errors.ConfigError:
            return StrmSparkError(m["msg"].strip())
    kafka = _KAFKA_ERROR.search(str(exc))
    if kafka:
        return KafkaUnavailable(f"the Kafka source failed ({kafka[1]})")
    return exc


def _fill(spark: SparkSession, config: JobConfig, out: StreamSummary, since: datetime) -> None:
    """The totals of this start's micro-batches, from their rows in the table of runs."""
    try:
        runs = read(spark, runs_path(config))
    except AnalysisException:
        return
    mine = runs.where(
        F.col("runId").startswith(f"{out.stream_id}-")
        & (F.col("startedAt") >= F.lit(since.replace(tzinfo=None, microsecond=0)))
    )
    row = mine.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum("rowsRead").alias("read"),
        F.sum("rowsEncrypted").alias("encrypted"),
        F.sum("rowsRejected").alias("rejected"),
        F.sum("keysCreated").alias("created"),
        F.sum("keysReused").alias("reused"),
        F.sum(F.get_json_object("summary", "$.rows_tombstoned").cast("long")).alias("tomb"),
    ).first()
    out.micro_batches = int(row["n"] or 0)
    out.rows_read, out.rows_encrypted = int(row["read"] or 0), int(row["encrypted"] or 0)
    out.rows_rejected, out.rows_tombstoned = int(row["rejected"] or 0), int(row["tomb"] or 0)
    out.keys_created, out.keys_reused = int(row["created"] or 0), int(row["reused"] or 0)
