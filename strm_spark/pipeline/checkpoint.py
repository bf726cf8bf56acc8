"""A stream's checkpoint is the job's own: on the first start strm-spark records the job's name
and a new stream id in it (`storage.checkpoints`); a checkpoint of another job, or of a query
strm-spark did not start, is refused, and so is an incremental `run` of a job that is streamed
now."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from strm_spark.config.model import JobConfig
from strm_spark.errors import UsageError
from strm_spark.storage import checkpoints


def checkpoint_of(config: JobConfig) -> str:
    """The job's checkpoint (`outputs.checkpoint`, or `--checkpoint`), which a stream needs."""
    if config.checkpoint is None:
        raise UsageError(
            f"job {config.name}: a stream needs a checkpoint folder: set outputs.checkpoint "
            "(a path, URI or volume) or pass --checkpoint"
        )
    return config.checkpoint


def claim_checkpoint(spark: SparkSession, checkpoint: str, job: str) -> str:
    """The stream id recorded in the job's checkpoint, recorded now on a first start; a
    checkpoint of another job, or of a query strm-spark did not start, is refused."""
    found = checkpoints.owner(spark, checkpoint)
    if found is None:
        if checkpoints.is_query_checkpoint(spark, checkpoint):
            raise UsageError(
                f"checkpoint {checkpoint} holds another streaming query's checkpoint, not a "
                "strm-spark job's: give the job a folder of its own"
            )
        at = datetime.now(UTC).isoformat(timespec="seconds")
        found = checkpoints.record_owner(spark, checkpoint, job, uuid.uuid4().hex[:12], at)
    if found["job"] != job:
        raise UsageError(
            f"checkpoint {checkpoint} belongs to job {found['job']}, not {job}: give each "
            "job a checkpoint of its own (outputs.checkpoint or --checkpoint)"
        )
    return found["stream"]


def refuse_if_streamed(spark: SparkSession, config: JobConfig) -> None:
    """An incremental `run` of a job whose checkpoint a stream owns would process the files the
    stream did again: refused (one look at the checkpoint, no Spark job)."""
    if config.checkpoint is not None and checkpoints.has_owner(spark, config.checkpoint):
        raise UsageError(
            f"job {config.name} runs as a stream now (its checkpoint {config.checkpoint} is "
            "the stream's): run it with `strm-spark stream` (--available-now by default), "
            "which processes new files only"
        )
