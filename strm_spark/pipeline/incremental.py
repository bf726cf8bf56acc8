"""Incremental runs: which source files a run processes, and writing them exactly once.

A job with `source.incremental: true` keeps a Delta table of the files it processed
(`<summary_dir>/files`). A run lists the source (a file, folder or glob), takes the files no
earlier batch of the job processed, and claims them as batch N before committing anything. Every
Delta output is then written with Delta's idempotent-write options (`txnAppId` = the job,
`txnVersion` = N): a write Delta has already committed for batch N is skipped. If the process
dies, the claim stays open and the next run resumes batch N with the same files, run id and write
mode, so each source row lands in each output exactly once. Keys are created with an insert-only
MERGE (idempotent) and data subjects are merged, so their steps need no version.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import quote

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark.errors import StrmSparkError, UsageError
from strm_spark.storage.listing import SourceFile
from strm_spark.storage.tables import (
    create_table,
    is_conflict,
    is_delta,
    merge,
    read,
    sql_string,
    update,
)

FILES_SCHEMA = T.StructType(
    [
        T.StructField("jobName", T.StringType(), False),
        T.StructField("batchId", T.LongType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("size", T.LongType(), True),
        T.StructField("modifiedAt", T.LongType(), True),  # epoch milliseconds
        T.StructField("runId", T.StringType(), False),
        T.StructField("mode", T.StringType(), False),  # append, or overwrite for --reprocess
        T.StructField("state", T.StringType(), False),  # claimed, then done
        T.StructField("at", T.TimestampType(), False),
    ]
)


@dataclass(frozen=True)
class Batch:
    batch_id: int
    run_id: str
    mode: str
    files: tuple[SourceFile, ...]
    resumed: bool

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


class FileLog:
    """The table of files a job processed, by batch."""

    def __init__(self, spark: SparkSession, path: str, job: str) -> None:
        self.spark, self.path, self.job = spark, path, job

    def _rows(self):
        create_table(self.spark, self.path, FILES_SCHEMA, stats_columns="jobName,batchId,state,at")
        return read(self.spark, self.path).where(F.col("jobName") == F.lit(self.job))

    def next_batch(self, listed: list[SourceFile], reprocess: bool = False) -> Batch | None:
        """The batch this run processes: an unfinished one (resumed as it was), else the listed
        files no batch has processed (all of them with `reprocess`); None when there are none."""
        rows = self._rows().collect()
        done = {r["batchId"] for r in rows if r["state"] == "done"}
        open_batches = sorted({r["batchId"] for r in rows} - done)
        if open_batches:
            batch_id = open_batches[0]
            mine = [r for r in rows if r["batchId"] == batch_id]
            files = tuple(
                SourceFile(r["path"], r["size"], r["modifiedAt"])
                for r in sorted(mine, key=lambda r: r["path"])
            )
            return Batch(batch_id, mine[0]["runId"], mine[0]["mode"], files, resumed=True)
        seen = {r["path"] for r in rows}
        new = listed if reprocess else [f for f in listed if f.path not in seen]
        if not new:
            return None
        next_id = max((r["batchId"] for r in rows), default=-1) + 1
        return Batch(
            next_id,
            uuid.uuid4().hex[:12],
            "overwrite" if reprocess else "append",
            tuple(new),
            resumed=False,
        )

    def claim(self, batch: Batch) -> None:
        """Record the batch's files before anything is committed. An insert-only MERGE, so that
        two runs of the job claiming at once conflict instead of both going ahead."""
        if batch.resumed:
            return
        rows = [
            (
                self.job,
                batch.batch_id,
                f.path,
                f.size,
                f.modified_at,
                batch.run_id,
                batch.mode,
                "claimed",
            )
            for f in batch.files
        ]
        schema = T.StructType(FILES_SCHEMA.fields[:-1])
        new = self.spark.createDataFrame(rows, schema).withColumn("at", F.current_timestamp())
        try:
            merge(
                new,
                self.path,
                "t.jobName = s.jobName AND t.batchId = s.batchId",
                "WHEN NOT MATCHED THEN INSERT *",
                f"claim batch {batch.batch_id}",
            )
        except Exception as exc:
            if is_conflict(exc):
                raise StrmSparkError(
                    f"another run of job {self.job} claimed batch {batch.batch_id} at the same "
                    "time; run one job at a time, then rerun"
                ) from None
            raise
        claimed = (
            self._rows()
            .where((F.col("batchId") == batch.batch_id) & (F.col("runId") != batch.run_id))
            .count()
        )
        if claimed:
            raise StrmSparkError(
                f"another run of job {self.job} claimed batch {batch.batch_id} first; rerun"
            )

    def finish(self, batch: Batch) -> None:
        """Mark the batch done; with `overwrite` (reprocess), earlier batches are superseded."""
        update(
            self.spark,
            self.path,
            "state = 'done', at = current_timestamp()",
            f"jobName = {sql_string(self.job)} AND batchId = {int(batch.batch_id)}",
        )

    def handover(self) -> tuple[str, ...]:
        """The files the job's batches processed, for a stream taking over the job (none when
        the job never ran incrementally); an unfinished batch must be finished by `run` first.
        Each path as Spark's file listing and its `_metadata.file_path` write it."""
        if not is_delta(self.spark, self.path):
            return ()
        rows = read(self.spark, self.path).where(F.col("jobName") == F.lit(self.job))
        rows = rows.select("path", "state").collect()
        if any(r["state"] != "done" for r in rows):
            raise UsageError(
                f"job {self.job} has an unfinished incremental batch: finish it with "
                "`strm-spark run` before streaming the job"
            )
        paths = {r["path"] for r in rows}
        return tuple(sorted(paths | {quote(p, safe="/:") for p in paths}))

    def txn(self, batch: Batch) -> tuple[str, int]:
        """Delta's idempotent-write options for the batch's output writes."""
        return f"strm-spark:{self.job}", batch.batch_id
